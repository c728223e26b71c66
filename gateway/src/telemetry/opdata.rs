//! Operational data: one record per call (X-Road's op-monitoring fields — times, sizes, status,
//! consumer, Layanan, upstream, error class), indexed from the evidence log.
//!
//! **Never on the request path.** The index is built by a background task that reads the
//! evidence segments the request path already wrote (every few seconds, `interval_secs`), so
//! no request waits for it and nothing but the evidence log is written while answering.
//!
//! **Format.** In the index directory: `calls.jsonl`, an append-only file of JSON lines (one
//! [`Call`] each, in the order their last record was written), and `state.json`, where the
//! reading stopped (segment, offset) with the requests still waiting for their outcome. Lines
//! are fsynced before the state moves; after a crash between the two, calls already in the file
//! are recognised by their sequence and not appended twice.
//!
//! **Rebuildable.** Delete the directory (or run `penghubung opdata rebuild`): the next pass
//! reads the evidence log from its first segment again. **Retention**: calls whose response
//! left more than `retention_days` ago are removed (the file is rewritten) once an hour.
//!
//! Paths, queries and bodies are not copied: a call names its service, consumer, grant and
//! upstream by id, with sizes and times only.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use penghubung_evidence::schema::record::Kind;
use penghubung_evidence::schema::Record;
use penghubung_evidence::segment::{list_segments, parse_frame};
use serde::{Deserialize, Serialize};

/// The `[telemetry.opdata]` table: the operational-data index.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OpdataSettings {
    /// The index directory (created if missing; delete it to rebuild the index).
    pub dir: PathBuf,
    /// Calls older than this many days are removed from the index.
    #[serde(default = "default_retention")]
    pub retention_days: u32,
    /// Seconds between two reads of the evidence log.
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
}

fn default_retention() -> u32 {
    90
}

fn default_interval() -> u64 {
    5
}

impl OpdataSettings {
    /// Every problem with its path under `telemetry.opdata`.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut found = Vec::new();
        if self.dir.as_os_str().is_empty() {
            found.push(("telemetry.opdata.dir".into(), "must not be empty".into()));
        }
        if self.retention_days == 0 {
            found.push((
                "telemetry.opdata.retention_days".into(),
                "must be at least 1".into(),
            ));
        }
        if !(1..=3600).contains(&self.interval_secs) {
            found.push((
                "telemetry.opdata.interval_secs".into(),
                "must be 1 to 3600".into(),
            ));
        }
        found
    }
}

/// One call, as X-Road's operational monitoring records it (ids, times, sizes; no values).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Call {
    /// Sequence of the record that completed the call (its outcome, or the refusal).
    pub sequence: u64,
    /// Exchange id.
    pub exchange_id: String,
    /// W3C trace id.
    pub trace_id: String,
    /// Node that answered.
    pub node: String,
    /// Unix nanoseconds the request was recorded (accepted, or refused).
    pub request_in: i64,
    /// Unix nanoseconds the outcome was recorded (the refusal's time for a refusal).
    pub response_out: i64,
    /// Service (Layanan) id.
    pub service: String,
    /// Service version.
    pub service_version: String,
    /// The service's OPD.
    pub provider_opd: String,
    /// The consumer's OPD.
    pub consumer_opd: String,
    /// The consumer application.
    pub consumer_application: String,
    /// Grant id.
    pub grant: String,
    /// Request method.
    pub method: String,
    /// Status sent to the client.
    pub status: u32,
    /// `ok`, `failed`, `refused`, `token_issued` or `upstream_body_error` (a request without
    /// an outcome yet is not a call: it waits in the state).
    pub class: String,
    /// Error class (reason code) when not `ok`.
    pub reason: String,
    /// The stage that refused it (refusals only).
    pub stage: String,
    /// Upstream target that answered.
    pub upstream: String,
    /// Upstream attempts.
    pub attempts: u32,
    /// Request body bytes.
    pub request_bytes: u64,
    /// Response body bytes.
    pub response_bytes: u64,
    /// Nanoseconds from the request to the outcome, as the outcome records it.
    pub total_nanos: u64,
    /// Nanoseconds from the request to the upstream's response head.
    pub upstream_head_nanos: u64,
}

/// Where the reading stopped, with the requests waiting for their outcome.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    segment: u64,
    offset: u64,
    pending: BTreeMap<u64, Call>,
}

/// The index in a directory.
#[derive(Debug, Clone)]
pub struct Index {
    dir: PathBuf,
}

const CALLS: &str = "calls.jsonl";
const STATE: &str = "state.json";

fn io(what: &str, path: &Path, e: std::io::Error) -> String {
    format!("{what} {}: {e}", path.display())
}

impl Index {
    /// The index in `dir` (created if missing).
    pub fn open(dir: &Path) -> Result<Index, String> {
        std::fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
        Ok(Index {
            dir: dir.to_owned(),
        })
    }

    fn state(&self) -> Result<State, String> {
        let path = self.dir.join(STATE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(io("read", &path, e)),
        }
    }

    fn save_state(&self, state: &State) -> Result<(), String> {
        let path = self.dir.join(STATE);
        let tmp = self.dir.join("state.json.tmp");
        let bytes = serde_json::to_vec(state).map_err(|e| e.to_string())?;
        let mut file = std::fs::File::create(&tmp).map_err(|e| io("create", &tmp, e))?;
        file.write_all(&bytes).map_err(|e| io("write", &tmp, e))?;
        file.sync_all().map_err(|e| io("sync", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io("rename", &path, e))
    }

    /// Every call in the index, in order.
    fn calls(&self) -> Result<Vec<Call>, String> {
        let path = self.dir.join(CALLS);
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("open", &path, e)),
        };
        let mut calls = Vec::new();
        for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| io("read", &path, e))?;
            if line.is_empty() {
                continue;
            }
            // A torn last line (a crash while appending) is skipped; its call comes again.
            match serde_json::from_str(&line) {
                Ok(call) => calls.push(call),
                Err(e) => {
                    tracing::warn!(line = n + 1, error = %e, "opdata: unreadable line skipped")
                }
            }
        }
        Ok(calls)
    }

    /// The sequence of the last call in the file (0: none), read from its tail only.
    fn last_sequence(&self) -> Result<u64, String> {
        use std::io::{Read, Seek, SeekFrom};
        let path = self.dir.join(CALLS);
        let mut file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io("open", &path, e)),
        };
        let length = file.metadata().map_err(|e| io("stat", &path, e))?.len();
        // A call is far below 64 KiB: the tail holds the last whole line.
        let start = length.saturating_sub(64 * 1024);
        file.seek(SeekFrom::Start(start))
            .map_err(|e| io("seek", &path, e))?;
        let mut tail = Vec::new();
        file.read_to_end(&mut tail)
            .map_err(|e| io("read", &path, e))?;
        Ok(String::from_utf8_lossy(&tail)
            .lines()
            .rev()
            .find_map(|line| serde_json::from_str::<Call>(line).ok())
            .map_or(0, |c| c.sequence))
    }

    /// Reads the evidence records written since the last pass and appends their calls.
    /// Returns how many calls were appended.
    pub fn update(&self, evidence: &Path) -> Result<usize, String> {
        let mut state = self.state()?;
        let last = self.last_sequence()?;
        let segments = list_segments(evidence).map_err(|e| io("list", evidence, e))?;
        let mut found = Vec::new();
        for (index, path) in segments {
            if index < state.segment {
                continue;
            }
            let data = std::fs::read(&path).map_err(|e| io("read", &path, e))?;
            let mut offset = if index == state.segment {
                usize::try_from(state.offset).unwrap_or(usize::MAX)
            } else {
                0
            };
            if offset > data.len() {
                return Err(format!(
                    "{} is shorter than the index has read: delete the index to rebuild it",
                    path.display()
                ));
            }
            // A frame still being written (or a torn tail) ends this pass at the last whole one.
            while let Ok(Some(frame)) = parse_frame(&data[offset..]) {
                offset += frame.len;
                let decoded = penghubung_evidence::decode::decode_record(frame.record)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                if let Some(call) = take(&mut state.pending, decoded.record) {
                    if call.sequence > last {
                        found.push(call);
                    }
                }
            }
            state.segment = index;
            state.offset = offset as u64;
        }
        if !found.is_empty() {
            let path = self.dir.join(CALLS);
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| io("open", &path, e))?;
            let mut text = Vec::new();
            for call in &found {
                serde_json::to_writer(&mut text, call).map_err(|e| e.to_string())?;
                text.push(b'\n');
            }
            file.write_all(&text).map_err(|e| io("append", &path, e))?;
            file.sync_all().map_err(|e| io("sync", &path, e))?;
        }
        self.save_state(&state)?;
        Ok(found.len())
    }

    /// Removes calls whose response left before `cutoff` (Unix nanoseconds), and requests
    /// waiting since before it. Returns how many calls were removed.
    pub fn prune(&self, cutoff: i64) -> Result<usize, String> {
        let calls = self.calls()?;
        let kept: Vec<&Call> = calls.iter().filter(|c| c.response_out >= cutoff).collect();
        let removed = calls.len() - kept.len();
        if removed > 0 {
            let path = self.dir.join(CALLS);
            let tmp = self.dir.join("calls.jsonl.tmp");
            let mut text = Vec::new();
            for call in kept {
                serde_json::to_writer(&mut text, call).map_err(|e| e.to_string())?;
                text.push(b'\n');
            }
            let mut file = std::fs::File::create(&tmp).map_err(|e| io("create", &tmp, e))?;
            file.write_all(&text).map_err(|e| io("write", &tmp, e))?;
            file.sync_all().map_err(|e| io("sync", &tmp, e))?;
            std::fs::rename(&tmp, &path).map_err(|e| io("rename", &path, e))?;
        }
        let mut state = self.state()?;
        let before = state.pending.len();
        state.pending.retain(|_, c| c.request_in >= cutoff);
        if state.pending.len() != before {
            self.save_state(&state)?;
        }
        Ok(removed)
    }

    /// The calls matching `query`, oldest first, at most `query.limit`.
    pub fn query(&self, query: &Query) -> Result<Vec<Call>, String> {
        let mut calls: Vec<Call> = self
            .calls()?
            .into_iter()
            .filter(|c| query.matches(c))
            .collect();
        calls.sort_by_key(|c| (c.request_in, c.sequence));
        calls.truncate(query.limit);
        Ok(calls)
    }
}

/// The call a record completes, if any (a request waits in `pending` for its outcome).
fn take(pending: &mut BTreeMap<u64, Call>, record: Record) -> Option<Call> {
    let Record {
        sequence,
        time_unix_nanos: time,
        node_id,
        exchange_id,
        trace_id,
        kind,
        ..
    } = record;
    match kind? {
        Kind::Request(r) => {
            let consumer = r.consumer.unwrap_or_default();
            let provider = r.provider.unwrap_or_default();
            pending.insert(
                sequence,
                Call {
                    exchange_id,
                    trace_id,
                    node: node_id,
                    request_in: time,
                    service: provider.service_id,
                    service_version: provider.service_version,
                    provider_opd: provider.opd,
                    consumer_opd: consumer.opd,
                    consumer_application: consumer.application,
                    grant: r.grant_id,
                    method: r.method,
                    request_bytes: r.body_length,
                    ..Call::default()
                },
            );
            None
        }
        Kind::Outcome(o) => {
            let mut call = pending.remove(&o.request_sequence).unwrap_or_else(|| Call {
                exchange_id,
                trace_id,
                node: node_id,
                request_in: time,
                ..Call::default()
            });
            call.sequence = sequence;
            call.response_out = time;
            call.status = o.status;
            call.class = o.outcome_class;
            call.reason = o.reason;
            call.upstream = o.upstream_address;
            call.attempts = o.attempts;
            call.response_bytes = o.response_length;
            call.total_nanos = o.total_nanos;
            call.upstream_head_nanos = o.upstream_head_nanos;
            if call.request_bytes == 0 {
                call.request_bytes = o.request_body_length;
            }
            Some(call)
        }
        Kind::Refused(r) => {
            let consumer = r.consumer.unwrap_or_default();
            Some(Call {
                sequence,
                exchange_id,
                trace_id,
                node: node_id,
                request_in: time,
                response_out: time,
                service: r.service_id,
                consumer_opd: consumer.opd,
                consumer_application: consumer.application,
                grant: r.grant_id,
                method: r.method,
                status: r.status,
                class: "refused".into(),
                reason: r.reason_class,
                stage: r.stage,
                ..Call::default()
            })
        }
        _ => None,
    }
}

/// A query: a period, an OPD (consumer or provider), a service, a status.
#[derive(Debug, Clone)]
pub struct Query {
    /// From (Unix nanoseconds, inclusive), on `request_in`.
    pub from: Option<i64>,
    /// Until (Unix nanoseconds, exclusive), on `request_in`.
    pub until: Option<i64>,
    /// The consumer's or the provider's OPD.
    pub opd: Option<String>,
    /// Service id.
    pub service: Option<String>,
    /// A status (`200`), a class (`5xx`) or `refused`.
    pub status: Option<String>,
    /// Most calls returned.
    pub limit: usize,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            from: None,
            until: None,
            opd: None,
            service: None,
            status: None,
            limit: 1000,
        }
    }
}

fn parse_time(text: &str) -> Result<i64, String> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("{text:?} is not an RFC 3339 time: {e}"))?;
    i64::try_from(t.unix_timestamp_nanos()).map_err(|_| format!("{text:?} is out of range"))
}

impl Query {
    /// A query from `name=value` pairs (`from`, `until` as RFC 3339 times, `opd`, `service`,
    /// `status`, `limit`); an unknown name or a bad value is an error.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Query, String> {
        let mut q = Query::default();
        for (name, value) in pairs {
            match name {
                "from" => q.from = Some(parse_time(value)?),
                "until" => q.until = Some(parse_time(value)?),
                "opd" => q.opd = Some(value.to_owned()),
                "service" => q.service = Some(value.to_owned()),
                "status" => {
                    let ok = value == "refused"
                        || value.parse::<u16>().is_ok()
                        || (value.len() == 3
                            && value.ends_with("xx")
                            && value.starts_with(['1', '2', '3', '4', '5']));
                    if !ok {
                        return Err(format!(
                            "status {value:?}: a code (200), a class (5xx) or \"refused\""
                        ));
                    }
                    q.status = Some(value.to_owned());
                }
                "limit" => {
                    q.limit = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=100_000).contains(n))
                        .ok_or_else(|| format!("limit {value:?}: 1 to 100000"))?;
                }
                other => return Err(format!("unknown parameter {other:?}")),
            }
        }
        Ok(q)
    }

    /// Whether a call matches.
    pub fn matches(&self, c: &Call) -> bool {
        let status_ok = match self.status.as_deref() {
            None => true,
            Some("refused") => c.class == "refused",
            Some(s) if s.ends_with("xx") => c.status / 100 == u32::from(s.as_bytes()[0] - b'0'),
            Some(s) => s.parse::<u32>().is_ok_and(|code| code == c.status),
        };
        self.from.is_none_or(|f| c.request_in >= f)
            && self.until.is_none_or(|u| c.request_in < u)
            && self
                .opd
                .as_ref()
                .is_none_or(|o| *o == c.consumer_opd || *o == c.provider_opd)
            && self.service.as_ref().is_none_or(|s| *s == c.service)
            && status_ok
    }
}

/// Decodes `a=b&c=d` (percent-escapes and `+` as space) into pairs.
pub fn query_pairs(query: &str) -> Result<Vec<(String, String)>, String> {
    fn decode(text: &str) -> Result<String, String> {
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = bytes
                        .get(i + 1..i + 3)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .ok_or_else(|| format!("bad escape in {text:?}"))?;
                    out.push(hex);
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).map_err(|_| format!("{text:?} is not UTF-8"))
    }
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode(name)?, decode(value)?))
        })
        .collect()
}

/// Keeps the index current until shutdown: a pass every `interval_secs` (on a blocking
/// thread), and the retention applied at start and once an hour.
pub async fn run(
    settings: OpdataSettings,
    evidence: PathBuf,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(settings.interval_secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let prune = last_prune.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600));
        let (settings, evidence) = (settings.clone(), evidence.clone());
        let pass = tokio::task::spawn_blocking(move || {
            let index = Index::open(&settings.dir)?;
            let added = index.update(&evidence)?;
            if prune {
                let keep = i64::from(settings.retention_days) * 86_400 * 1_000_000_000;
                let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
                let now = i64::try_from(now).unwrap_or(i64::MAX);
                index.prune(now.saturating_sub(keep))?;
            }
            Ok::<usize, String>(added)
        })
        .await;
        match pass {
            Ok(Ok(_)) => {
                if prune {
                    last_prune = Some(tokio::time::Instant::now());
                }
            }
            Ok(Err(error)) => tracing::warn!(%error, "operational data index not updated"),
            Err(error) => tracing::warn!(%error, "operational data index pass failed"),
        }
    }
}

/// `GET /opdata?from=…&until=…&opd=…&service=…&status=…&limit=…` on the admin listener: the
/// matching calls as `{"count": n, "calls": [...]}`; 400 for a bad parameter, 404 when no
/// index is configured.
pub async fn answer(dir: Option<PathBuf>, query: Option<&str>) -> (http::StatusCode, String) {
    let error =
        |status, message: String| (status, serde_json::json!({ "error": message }).to_string());
    let Some(dir) = dir else {
        return error(
            http::StatusCode::NOT_FOUND,
            "no operational data index is configured ([telemetry.opdata])".into(),
        );
    };
    let parsed = query_pairs(query.unwrap_or(""))
        .and_then(|pairs| Query::from_pairs(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str()))));
    let query = match parsed {
        Ok(query) => query,
        Err(message) => return error(http::StatusCode::BAD_REQUEST, message),
    };
    let found = tokio::task::spawn_blocking(move || Index::open(&dir)?.query(&query)).await;
    match found {
        Ok(Ok(calls)) => (
            http::StatusCode::OK,
            serde_json::json!({ "count": calls.len(), "calls": calls }).to_string(),
        ),
        Ok(Err(message)) => error(http::StatusCode::INTERNAL_SERVER_ERROR, message),
        Err(e) => error(http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[cfg(test)]
mod tests;

//! Accepting connections and serving HTTP/1.1 and HTTP/2 on them.
//!
//! hyper does the HTTP parsing with strict settings (header buffer and count limits, a total
//! header-read deadline); HTTP/2 is offered by ALPN on TLS and by prior knowledge on cleartext.
//! A watchdog closes idle keep-alive connections (only when no request is in flight, so a long
//! streamed response is never cut) and cuts off clients that stop reading a response.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::io::{now_ms, Activity, InFlight, TimedIo};
use super::scan::ScanConfig;
use crate::identity::ConnInfo;
use crate::pipeline::{Connection, Plane};
use crate::telemetry::ListenerMetrics;

/// Accepts connections until shutdown. A connection beyond the listener's limit is closed at once.
pub async fn accept_loop(
    gateway: Arc<Plane>,
    index: usize,
    listener: TcpListener,
    limit: Arc<Semaphore>,
    metrics: Arc<ListenerMetrics>,
) {
    let mut shutdown = gateway.shutdown_signal();
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            metrics.rejected.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        metrics.total.fetch_add(1, Ordering::Relaxed);
        metrics.open.fetch_add(1, Ordering::Relaxed);
        let gateway = gateway.clone();
        let metrics = metrics.clone();
        connections.spawn(async move {
            serve(gateway, index, stream, peer, &metrics).await;
            metrics.open.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    drop(listener);
    // Drain: connections got the shutdown signal too and close when their requests finish.
    while connections.join_next().await.is_some() {}
}

async fn serve(
    gateway: Arc<Plane>,
    index: usize,
    stream: TcpStream,
    peer: std::net::SocketAddr,
    metrics: &ListenerMetrics,
) {
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().unwrap_or(peer);
    let runtime = gateway.snapshot.load_full();
    let handshake_deadline = Duration::from_secs(runtime.limits.header_read_timeout_secs);
    // The header deadline starts at accept: a connection whose first request head is not
    // complete when it passes (TLS handshake included) is closed, whether it sent nothing or
    // a trickle, instead of living until the idle timeout or getting a fresh header timeout
    // from its first byte.
    let first_head_deadline = tokio::time::Instant::now() + handshake_deadline;
    let tls = runtime.tls.get(index).cloned().flatten();
    drop(runtime);
    match tls {
        None => {
            let info = ConnInfo {
                peer,
                local,
                listener: index,
                tls: false,
                sni: None,
                client: None,
            };
            serve_io(gateway, stream, info, metrics, first_head_deadline).await;
        }
        Some(config) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            let tls_stream =
                match tokio::time::timeout(handshake_deadline, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(error)) => {
                        metrics.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%peer, %error, "TLS handshake failed");
                        crate::pipeline::connection_refused(
                            &gateway,
                            peer,
                            "tls_handshake",
                            None,
                            None,
                        );
                        return;
                    }
                    Err(_) => {
                        metrics.errors.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                };
            let (_, session) = tls_stream.get_ref();
            let sni = session
                .server_name()
                .map(|s| s.trim_end_matches('.').to_ascii_lowercase());
            let client = session
                .peer_certificates()
                .and_then(|c| c.first())
                .map(crate::tls::peer_identity);
            let info = ConnInfo {
                peer,
                local,
                listener: index,
                tls: true,
                sni,
                client,
            };
            serve_io(
                gateway,
                crate::tls::FlushingTls::new(tls_stream),
                info,
                metrics,
                first_head_deadline,
            )
            .await;
        }
    }
}

fn builder(gateway: &Plane, index: usize) -> auto::Builder<TokioExecutor> {
    let runtime = gateway.snapshot.load();
    let limits = &runtime.limits;
    let http2 = runtime.listener_http2.get(index).is_none_or(|h| *h);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_read_timeout_secs))
        .max_buf_size(limits.header_bytes.max(8192))
        .max_headers(limits.header_count + 1)
        .keep_alive(true)
        .half_close(false);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(limits.h2_max_header_list_bytes)
        .max_pending_accept_reset_streams(limits.h2_max_pending_reset_streams)
        .max_local_error_reset_streams(Some(limits.h2_max_pending_reset_streams))
        .max_send_buf_size(256 * 1024)
        .keep_alive_interval(Some(Duration::from_secs(
            limits.idle_timeout_secs.max(2) / 2,
        )))
        .keep_alive_timeout(Duration::from_secs(20));
    if !http2 {
        builder = builder.http1_only();
    }
    builder
}

async fn serve_io<T>(
    gateway: Arc<Plane>,
    io: T,
    info: ConnInfo,
    metrics: &ListenerMetrics,
    first_head_deadline: tokio::time::Instant,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Activity::new();
    let builder = builder(&gateway, info.listener);
    let (idle, send, scan) = {
        let runtime = gateway.snapshot.load();
        let limits = &runtime.limits;
        let scan = ScanConfig {
            h2: runtime.listener_http2.get(info.listener).is_none_or(|h| *h),
            // hyper's read buffer bounds a head (see `builder`).
            head_limit: limits.header_bytes.max(8192),
            h2_control_frames_per_sec: limits.h2_max_control_frames_per_sec,
        };
        (
            limits.idle_timeout_secs * 1000,
            limits.send_timeout_secs * 1000,
            scan,
        )
    };
    let peer = info.peer;
    let info = Arc::new(info);
    let service = {
        let gateway = gateway.clone();
        let activity = activity.clone();
        service_fn(move |request: hyper::Request<Incoming>| {
            let gateway = gateway.clone();
            let info = info.clone();
            let activity = activity.clone();
            async move {
                let in_flight = InFlight::new(&activity);
                let index = activity.next_request();
                // hyper drops Content-Length when Transfer-Encoding is present; the byte
                // scanner (h1frame) saw the raw head.
                let cl_te = activity.content_length_with_transfer_encoding(index);
                let connection = Connection {
                    info,
                    content_length_with_transfer_encoding: cl_te,
                    in_flight,
                };
                // The runtime is loaded once: the whole exchange sees one config, even across
                // a reload.
                let runtime = gateway.snapshot.load_full();
                Ok::<_, Infallible>(
                    crate::pipeline::handle(
                        runtime,
                        &gateway.evidence,
                        &gateway.refusals,
                        connection,
                        request,
                    )
                    .await,
                )
            }
        })
    };
    let connection = builder.serve_connection(
        TokioIo::new(TimedIo::new(io, activity.clone(), scan)),
        service,
    );
    tokio::pin!(connection);
    let mut shutdown = gateway.shutdown_signal();
    let mut draining = false;
    let mut awaiting_first_head = true;
    let result = loop {
        tokio::select! {
            result = connection.as_mut() => break result,
            _ = tokio::time::sleep_until(first_head_deadline), if awaiting_first_head => {
                awaiting_first_head = false;
                if activity.requests.load(Ordering::Acquire) == 0 {
                    tracing::debug!(%peer, bytes = activity.bytes_read.load(Ordering::Relaxed), "no complete request head within the header timeout of accept; connection closed");
                    metrics.errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            _ = shutdown.changed(), if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
            verdict = watchdog(&activity, idle, send) => match verdict {
                Watchdog::Idle if !draining => {
                    draining = true;
                    connection.as_mut().graceful_shutdown();
                }
                Watchdog::Idle => {
                    tracing::debug!(%peer, "closing connection that did not drain");
                    return;
                }
                Watchdog::SendStalled => {
                    tracing::debug!(%peer, "client stopped reading; connection cut");
                    metrics.errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            },
        }
    };
    if activity.h2_malformed.load(Ordering::Relaxed) {
        metrics.errors.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%peer, "HTTP/2 pseudo-header field in a trailer section; connection closed");
        crate::pipeline::connection_refused(
            &gateway,
            peer,
            "h2_pseudo_header_in_trailers",
            None,
            None,
        );
        return;
    }
    if activity.h2_flood.load(Ordering::Relaxed) {
        metrics.errors.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%peer, "HTTP/2 control frame flood; connection closed");
        crate::pipeline::connection_refused(&gateway, peer, "h2_control_flood", None, None);
        return;
    }
    if let Err(error) = result {
        let answered = activity.parser_refusal.lock().take();
        connection_error(&gateway, peer, &*error, metrics, answered);
    }
}

enum Watchdog {
    Idle,
    SendStalled,
}

/// Resolves when the connection has been idle (nothing in flight, nothing read) for `idle_ms`,
/// or a write has been blocked for `send_ms`.
async fn watchdog(activity: &Activity, idle_ms: u64, send_ms: u64) -> Watchdog {
    loop {
        let now = now_ms();
        let blocked = activity.write_blocked_since_ms.load(Ordering::Relaxed);
        if blocked != 0 && now.saturating_sub(blocked) >= send_ms {
            return Watchdog::SendStalled;
        }
        let in_flight = activity.in_flight.load(Ordering::Relaxed);
        let last = activity.last_read_ms.load(Ordering::Relaxed);
        if in_flight == 0 && now.saturating_sub(last) >= idle_ms {
            return Watchdog::Idle;
        }
        let next_idle = if in_flight == 0 {
            (last + idle_ms).saturating_sub(now)
        } else {
            idle_ms
        };
        let next_send = if blocked != 0 {
            (blocked + send_ms).saturating_sub(now)
        } else {
            send_ms
        };
        let wait = next_idle.min(next_send).clamp(50, 5_000);
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
}

/// Classifies an error that ended a connection. Parse errors were already answered by hyper
/// (400/431); they are refusals and get recorded.
fn connection_error(
    gateway: &Plane,
    peer: std::net::SocketAddr,
    error: &(dyn std::error::Error + 'static),
    metrics: &ListenerMetrics,
    answered: Option<super::io::ParserRefusal>,
) {
    let Some(hyper_error) = error.downcast_ref::<hyper::Error>() else {
        tracing::debug!(%peer, %error, "connection ended with an error");
        if let Some(a) = answered {
            crate::pipeline::connection_refused(gateway, peer, a.reason, None, Some(a));
        }
        return;
    };
    let reason = if hyper_error.is_parse_too_large() {
        "headers_too_large"
    } else if hyper_error.is_parse() || hyper_error.is_parse_status() {
        "http_parse"
    } else if hyper_error.is_timeout() {
        "header_timeout"
    } else if let Some(a) = &answered {
        a.reason
    } else {
        tracing::debug!(%peer, error = %hyper_error, "connection ended");
        return;
    };
    metrics.errors.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(%peer, error = %hyper_error, reason, "connection refused by the HTTP parser");
    crate::pipeline::connection_refused(gateway, peer, reason, None, answered);
}

//! The names of the pipeline stages, in order (below the pipeline, so errors and telemetry can
//! name a stage without depending on the pipeline).

/// The stage an exchange ended at, used for metrics and evidence: the stage that refused it, or
/// `Dispatch` for one that was forwarded. (Streaming the response back and recording its outcome
/// come after dispatch; how they ended is in the outcome record, not a stage of its own here.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Connection accepted, TLS, HTTP parsing.
    Accept,
    /// Request hygiene, limits, canonical path.
    Admit,
    /// Host/method/path to service.
    Route,
    /// Credentials to principal.
    Authenticate,
    /// Grant check.
    Authorize,
    /// Rate limits and quotas.
    Throttle,
    /// Evidence of the request.
    RecordRequest,
    /// Upstream call.
    Dispatch,
}

impl Stage {
    /// The stage's name as used everywhere.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Accept => "accept",
            Stage::Admit => "admit",
            Stage::Route => "route",
            Stage::Authenticate => "authenticate",
            Stage::Authorize => "authorize",
            Stage::Throttle => "throttle",
            Stage::RecordRequest => "record_request",
            Stage::Dispatch => "dispatch",
        }
    }

    /// All stages, in pipeline order.
    pub const ALL: [Stage; 8] = [
        Stage::Accept,
        Stage::Admit,
        Stage::Route,
        Stage::Authenticate,
        Stage::Authorize,
        Stage::Throttle,
        Stage::RecordRequest,
        Stage::Dispatch,
    ];
}

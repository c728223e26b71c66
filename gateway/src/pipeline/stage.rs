//! The names of the pipeline stages, in order.

/// A pipeline stage name, used for spans, metrics and evidence.
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
    /// Response streaming.
    Respond,
    /// Evidence of the outcome.
    RecordOutcome,
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
            Stage::Respond => "respond",
            Stage::RecordOutcome => "record_outcome",
        }
    }

    /// All stages, in pipeline order.
    pub const ALL: [Stage; 10] = [
        Stage::Accept,
        Stage::Admit,
        Stage::Route,
        Stage::Authenticate,
        Stage::Authorize,
        Stage::Throttle,
        Stage::RecordRequest,
        Stage::Dispatch,
        Stage::Respond,
        Stage::RecordOutcome,
    ];
}

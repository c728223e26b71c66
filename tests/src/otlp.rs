//! A real OTLP/gRPC trace receiver: a tonic server on the OpenTelemetry collector's
//! `TraceService` (opentelemetry-proto), keeping every span it is sent.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;

use crate::IO_TIMEOUT;

#[derive(Clone, Default)]
struct Collected(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Collected {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// The receiver on a loopback port; [`OtlpReceiver::stop`] takes it down.
pub struct OtlpReceiver {
    pub addr: SocketAddr,
    spans: Collected,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl OtlpReceiver {
    pub async fn start() -> OtlpReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let spans = Collected::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let service = TraceServiceServer::new(spans.clone());
        let task = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    async {
                        let _ = stopped.await;
                    },
                )
                .await
                .unwrap();
        });
        OtlpReceiver {
            addr,
            spans,
            stop: Some(stop),
            task,
        }
    }

    /// The collector endpoint for `[telemetry.traces]`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.spans.0.lock().unwrap().clone()
    }

    /// Waits (bounded) until `done` holds for the spans received.
    pub async fn wait_until(&self, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let deadline = tokio::time::Instant::now() + IO_TIMEOUT;
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the receiver did not get the spans wanted; it has {}",
                tree(&spans)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the server (its port refuses connections afterwards).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// A string attribute of a span.
pub fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
        .map(|v| match v {
            Value::StringValue(s) => s.clone(),
            Value::IntValue(i) => i.to_string(),
            Value::BoolValue(b) => b.to_string(),
            Value::DoubleValue(d) => d.to_string(),
            other => format!("{other:?}"),
        })
}

/// The spans as an indented tree (children under their parent, in start order), with each
/// span's attributes.
pub fn tree(spans: &[Span]) -> String {
    fn walk(spans: &[Span], parent: &[u8], depth: usize, out: &mut String) {
        let mut children: Vec<&Span> = spans
            .iter()
            .filter(|s| s.parent_span_id == parent)
            .collect();
        children.sort_by_key(|s| s.start_time_unix_nano);
        for span in children {
            let micros = span
                .end_time_unix_nano
                .saturating_sub(span.start_time_unix_nano)
                / 1000;
            let attrs: Vec<String> = span
                .attributes
                .iter()
                .map(|kv| format!("{}={}", kv.key, attr(span, &kv.key).unwrap_or_default()))
                .collect();
            out.push_str(&format!(
                "{}{} [{}µs] span={} {}\n",
                "  ".repeat(depth),
                span.name,
                micros,
                hex::encode(&span.span_id),
                attrs.join(" ")
            ));
            walk(spans, &span.span_id, depth + 1, out);
        }
    }
    let ids: Vec<&[u8]> = spans.iter().map(|s| s.span_id.as_slice()).collect();
    let mut out = String::new();
    let mut roots: Vec<&[u8]> = spans
        .iter()
        .filter(|s| !ids.contains(&s.parent_span_id.as_slice()))
        .map(|s| s.parent_span_id.as_slice())
        .collect();
    roots.sort();
    roots.dedup();
    for root in roots {
        out.push_str(&format!("(parent {})\n", hex::encode(root)));
        walk(spans, root, 1, &mut out);
    }
    out
}

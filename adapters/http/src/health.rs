//! Active health checks: one task per upstream group, ending when the group is dropped.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use http::{header, HeaderValue, Request};
use http_body_util::BodyExt;

use super::{HealthCheck, Inner};

pub(crate) async fn health_loop(weak: Weak<Inner>) {
    loop {
        let Some(interval) = weak
            .upgrade()
            .and_then(|i| i.settings.health_check.as_ref().map(|h| h.interval))
        else {
            return;
        };
        tokio::time::sleep(interval).await;
        let Some(inner) = weak.upgrade() else { return };
        let Some(check) = inner.settings.health_check.clone() else {
            return;
        };
        for index in 0..inner.targets.len() {
            let ok = probe(&inner, index, &check).await;
            let target = &inner.targets[index];
            if ok {
                target.checks_failed.store(0, Ordering::Relaxed);
                let n = target.checks_ok.fetch_add(1, Ordering::Relaxed) + 1;
                if n >= check.healthy_after && !target.healthy.swap(true, Ordering::Relaxed) {
                    tracing::info!(upstream = %inner.settings.name, target = %target.authority, "target healthy again");
                }
            } else {
                target.checks_ok.store(0, Ordering::Relaxed);
                let n = target.checks_failed.fetch_add(1, Ordering::Relaxed) + 1;
                if n >= check.unhealthy_after && target.healthy.swap(false, Ordering::Relaxed) {
                    tracing::warn!(upstream = %inner.settings.name, target = %target.authority, "target failed health checks");
                }
            }
        }
    }
}

async fn probe(inner: &Arc<Inner>, index: usize, check: &HealthCheck) -> bool {
    let Ok(path) = check.path.parse::<http::uri::PathAndQuery>() else {
        return false;
    };
    let Ok(uri) = inner.uri_for(index, Some(&path)) else {
        return false;
    };
    let mut request = Request::new(penghubung_adapter::empty());
    *request.uri_mut() = uri;
    if !inner.settings.http2 {
        if let Ok(host) = HeaderValue::from_str(&inner.targets[index].authority) {
            request.headers_mut().insert(header::HOST, host);
        }
    } else {
        *request.version_mut() = http::Version::HTTP_2;
    }
    let call = async {
        let response = inner.client.request(request).await.ok()?;
        let ok = response.status().is_success() || response.status().is_redirection();
        response.into_body().collect().await.ok()?;
        Some(ok)
    };
    matches!(
        tokio::time::timeout(check.timeout, call).await,
        Ok(Some(true))
    )
}

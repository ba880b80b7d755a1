//! Counts and times every request by route template (never the raw path,
//! which holds secret resource ids).

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;

use super::state::AppState;

/// The middleware.
pub async fn request_metrics<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<B>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().to_string();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let result = next.call(req).await;
    if let Some(state) = state {
        let (route, status) = match &result {
            Ok(res) => (
                res.request()
                    .match_pattern()
                    .unwrap_or_else(|| "unmatched".to_string()),
                res.status().as_u16(),
            ),
            Err(e) => (
                "unmatched".to_string(),
                e.as_response_error().status_code().as_u16(),
            ),
        };
        let elapsed = started.elapsed().as_secs_f64();
        state
            .metrics
            .http_requests
            .with_label_values(&[route.as_str(), method.as_str(), &status.to_string()])
            .inc();
        state
            .metrics
            .http_duration
            .with_label_values(&[route.as_str(), method.as_str()])
            .observe(elapsed);
        tracing::debug!(
            route,
            method,
            status,
            elapsed_ms = elapsed * 1000.0,
            "http request"
        );
    }
    result
}

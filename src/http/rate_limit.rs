//! Per-IP request rate limit (`http.rate_limit_per_ip`), token bucket with a
//! burst of one second's worth. Keyed by the TCP peer address: forwarded
//! headers are not trusted because any client can set them. Operations
//! endpoints (health, readiness, metrics) are exempt so monitoring never
//! starves.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{ResponseError as _, web};
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::error::ApiError;
use super::state::AppState;

/// Paths never limited.
const EXEMPT: [&str; 3] = ["/health", "/ready", "/metrics"];

/// The shared limiter; `None` when the limit is 0 (disabled).
#[derive(Debug, Clone)]
pub struct IpRateLimiter(Option<Arc<DefaultKeyedRateLimiter<IpAddr>>>);

impl IpRateLimiter {
    /// A limiter of `per_second` requests per IP.
    pub fn new(per_second: u32) -> Self {
        Self(
            NonZeroU32::new(per_second).map(|n| Arc::new(RateLimiter::keyed(Quota::per_second(n)))),
        )
    }

    /// Drops idle per-IP state; call periodically so the map stays small.
    pub fn forget_idle(&self) {
        if let Some(l) = &self.0 {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }

    /// `Err(seconds to wait)` when `ip` is over its rate.
    fn check(&self, ip: IpAddr) -> Result<(), u64> {
        let Some(limiter) = &self.0 else {
            return Ok(());
        };
        limiter.check_key(&ip).map_err(|not_until| {
            let wait: Duration = not_until.wait_time_from(DefaultClock::default().now());
            wait.as_secs() + 1
        })
    }
}

/// The middleware.
pub async fn rate_limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let limiter = req.app_data::<web::Data<IpRateLimiter>>().cloned();
    let ip = req.peer_addr().map(|a| a.ip());
    if let (Some(limiter), Some(ip)) = (limiter, ip)
        && !EXEMPT.contains(&req.path())
        && let Err(retry_after) = limiter.check(ip)
    {
        if let Some(state) = req.app_data::<web::Data<AppState>>() {
            let route = req
                .match_pattern()
                .unwrap_or_else(|| "unmatched".to_string());
            state
                .metrics
                .http_rate_limited
                .with_label_values(&[&route])
                .inc();
        }
        let err = ApiError::TooManyRequests {
            detail: "too many requests from this address",
            retry_after,
        };
        return Ok(req.into_response(err.error_response()));
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

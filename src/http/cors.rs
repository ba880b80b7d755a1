//! CORS per API.md. Hand-written rather than actix-cors because that
//! middleware answers 400 to requests from unlisted origins, and browsers
//! send `Origin` on same-origin POSTs too: with the default (no listed
//! origins) our own web page would be refused.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};

use super::state::AppState;

const EXPOSE: &str =
    "Location, ETag, Link, X-Req-Token, Accept-Patch, Retry-After, Vestibule-Offer-Number";
const METHODS: &str = "GET, HEAD, POST, PATCH, DELETE, OPTIONS";
const HEADERS: &str = "Authorization, Content-Type, If-Match, X-Req-Token";

/// How a request's origin is treated.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Grant {
    /// Not a cross-origin grant: no CORS headers.
    None,
    /// `["*"]`: any origin, never with credentials.
    Any,
    /// A listed origin: echoed, with credentials.
    Listed(HeaderValue),
}

fn grant(allowed: &[String], headers: &HeaderMap) -> Grant {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Grant::None;
    };
    if allowed.iter().any(|o| o == "*") {
        return Grant::Any;
    }
    match origin.to_str() {
        Ok(o) if allowed.iter().any(|a| a == o) => Grant::Listed(origin.clone()),
        _ => Grant::None,
    }
}

fn decorate(headers: &mut HeaderMap, grant: &Grant) {
    match grant {
        Grant::None => return,
        Grant::Any => {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        }
        Grant::Listed(origin) => {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
            headers.append(header::VARY, HeaderValue::from_static("Origin"));
        }
    }
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSE),
    );
}

/// The middleware: answers preflights without authentication and adds the
/// CORS headers to every response for a granted origin.
pub async fn cors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let allowed = req
        .app_data::<web::Data<AppState>>()
        .map(|s| s.settings.security.allowed_origins.clone())
        .unwrap_or_default();
    let grant = grant(&allowed, req.headers());
    let is_preflight = req.method() == Method::OPTIONS
        && req.headers().contains_key(header::ORIGIN)
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if is_preflight {
        let mut resp = HttpResponse::NoContent().finish();
        if grant != Grant::None {
            let h = resp.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(METHODS),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(HEADERS),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
            decorate(h, &grant);
        }
        return Ok(req.into_response(resp));
    }
    let mut res = next.call(req).await?.map_into_boxed_body();
    decorate(res.headers_mut(), &grant);
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_origin(o: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, HeaderValue::from_str(o).expect("valid"));
        h
    }

    #[test]
    fn grants() {
        let listed = vec!["http://a.test".to_string()];
        assert!(matches!(
            grant(&listed, &with_origin("http://a.test")),
            Grant::Listed(_)
        ));
        assert_eq!(grant(&listed, &with_origin("http://b.test")), Grant::None);
        assert_eq!(
            grant(&["*".to_string()], &with_origin("http://b.test")),
            Grant::Any
        );
        assert_eq!(grant(&[], &with_origin("http://b.test")), Grant::None);
        assert_eq!(grant(&listed, &HeaderMap::new()), Grant::None);
    }
}

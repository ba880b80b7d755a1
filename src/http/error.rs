//! The HTTP layer's one error type and its single mapping to status codes
//! and `application/problem+json` bodies (RFC 9457).
//!
//! `detail` strings are client-safe by construction: they never carry
//! tokens, cookies, resource ids, keys or internal addresses.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use vestibule_actors::JoinError;
use vestibule_actors::media::MediaError;

use crate::auth::AuthError;
use crate::store::StoreError;

/// Every way an HTTP request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// 400: the SDP is malformed.
    #[error("malformed SDP: {0}")]
    MalformedSdp(String),
    /// 401: no or bad credentials.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 403: authenticated but not allowed.
    #[error("{0}")]
    Forbidden(&'static str),
    /// 404: unknown space, stream, lobby or resource.
    #[error("{0}")]
    NotFound(&'static str),
    /// 405: method not allowed here.
    #[error("method not allowed")]
    MethodNotAllowed {
        /// Value of the `Allow` header.
        allow: &'static str,
    },
    /// 409: state conflict.
    #[error("{detail}")]
    Conflict {
        /// What conflicts.
        detail: &'static str,
        /// Seconds, when retrying later can succeed.
        retry_after: Option<u64>,
    },
    /// 412: `If-Match` does not match.
    #[error("the resource changed (If-Match mismatch)")]
    PreconditionFailed,
    /// 413: body over the limit.
    #[error("body larger than {limit} bytes")]
    PayloadTooLarge {
        /// Limit in bytes.
        limit: usize,
    },
    /// 415: wrong `Content-Type`.
    #[error("Content-Type must be {expected}")]
    UnsupportedMediaType {
        /// Accepted type(s).
        expected: &'static str,
    },
    /// 422: well-formed but unusable.
    #[error("{0}")]
    Unprocessable(String),
    /// 429: over a limit.
    #[error("{detail}")]
    TooManyRequests {
        /// Which limit.
        detail: &'static str,
        /// Seconds to wait.
        retry_after: u64,
    },
    /// 500: a real fault; the cause is logged, not sent.
    #[error("internal error")]
    Internal(String),
    /// 501: the feature is not built in this version.
    #[error("{0}")]
    NotImplemented(&'static str),
    /// 503: shutting down or a subsystem is missing.
    #[error("{detail}")]
    Unavailable {
        /// What is missing.
        detail: &'static str,
        /// Seconds to wait.
        retry_after: u64,
    },
}

impl ApiError {
    /// Short machine-readable name, the last part of the problem `type`.
    fn slug(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad-request",
            ApiError::MalformedSdp(_) => "malformed-sdp",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not-found",
            ApiError::MethodNotAllowed { .. } => "method-not-allowed",
            ApiError::Conflict { .. } => "conflict",
            ApiError::PreconditionFailed => "precondition-failed",
            ApiError::PayloadTooLarge { .. } => "payload-too-large",
            ApiError::UnsupportedMediaType { .. } => "unsupported-media-type",
            ApiError::Unprocessable(_) => "unprocessable",
            ApiError::TooManyRequests { detail, .. } if detail.contains("lobby") => "lobby-full",
            ApiError::TooManyRequests { .. } => "rate-limited",
            ApiError::Internal(_) => "internal",
            ApiError::NotImplemented(_) => "not-implemented",
            ApiError::Unavailable { .. } => "unavailable",
        }
    }

    /// The retry hint, for statuses that carry `Retry-After`.
    fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::Conflict { retry_after, .. } => *retry_after,
            ApiError::TooManyRequests { retry_after, .. }
            | ApiError::Unavailable { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

/// RFC 9457 problem details.
#[derive(Debug, Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: String,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::MalformedSdp(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if let ApiError::Internal(cause) = self {
            tracing::error!(%cause, "internal error");
        }
        let problem = Problem {
            kind: format!("urn:vestibule:problem:{}", self.slug()),
            title: status.canonical_reason().unwrap_or("error"),
            status: status.as_u16(),
            detail: self.to_string(),
        };
        let mut resp = HttpResponse::build(status);
        resp.insert_header((header::CONTENT_TYPE, "application/problem+json"));
        if let Some(seconds) = self.retry_after() {
            resp.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        match self {
            ApiError::Unauthorized(_) => {
                resp.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            }
            ApiError::MethodNotAllowed { allow } => {
                resp.insert_header((header::ALLOW, *allow));
            }
            _ => {}
        }
        resp.body(serde_json::to_vec(&problem).unwrap_or_default())
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        // One message for every cause: telling a caller why its token failed
        // (bad key vs expired) helps attackers more than users.
        tracing::debug!(cause = %e, "token refused");
        match e {
            AuthError::Missing => ApiError::Unauthorized("missing credentials"),
            _ => ApiError::Unauthorized("invalid or expired token"),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<JoinError> for ApiError {
    fn from(e: JoinError) -> Self {
        match e {
            JoinError::LobbyFull => ApiError::TooManyRequests {
                detail: "the lobby is full",
                retry_after: 5,
            },
            JoinError::UserLimit => ApiError::TooManyRequests {
                detail: "too many sessions for this user",
                retry_after: 5,
            },
            JoinError::DuplicateUser => ApiError::Conflict {
                detail: "this user already has a session in the lobby",
                retry_after: None,
            },
            JoinError::ShuttingDown => ApiError::Unavailable {
                detail: "the server is shutting down",
                retry_after: 5,
            },
            JoinError::Unavailable => ApiError::Unavailable {
                detail: "the control plane is unavailable",
                retry_after: 1,
            },
        }
    }
}

impl From<MediaError> for ApiError {
    fn from(e: MediaError) -> Self {
        match e {
            MediaError::Unavailable => {
                ApiError::NotImplemented("the media plane is not built in this version")
            }
            MediaError::WorkerGone => ApiError::Unavailable {
                detail: "the media plane is stopping",
                retry_after: 5,
            },
            MediaError::MalformedSdp(why) => ApiError::MalformedSdp(why),
            MediaError::NoCodec(kind) => {
                ApiError::Unprocessable(format!("no acceptable codec for the offered {kind}"))
            }
            MediaError::NoPeer => ApiError::NotFound("no such session"),
            MediaError::NoPendingOffer => ApiError::Conflict {
                detail: "no offer is pending",
                retry_after: None,
            },
            MediaError::OfferOutstanding => ApiError::Conflict {
                detail: "an offer is outstanding",
                retry_after: Some(1),
            },
            MediaError::PreconditionFailed => ApiError::PreconditionFailed,
            e @ (MediaError::TooManyViewerSections
            | MediaError::UfragMismatch
            | MediaError::RestartNotAllowed) => ApiError::Unprocessable(e.to_string()),
        }
    }
}

impl From<actix::MailboxError> for ApiError {
    fn from(_: actix::MailboxError) -> Self {
        ApiError::Unavailable {
            detail: "the control plane did not answer",
            retry_after: 1,
        }
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(_: actix_web::error::BlockingError) -> Self {
        ApiError::Internal("blocking pool gone".to_string())
    }
}

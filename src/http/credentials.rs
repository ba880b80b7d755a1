//! Who is calling: API.md "Which credential wins".
//!
//! 1. A valid `Authorization: Bearer` alone authenticates; cookie and
//!    `X-Req-Token` are then ignored. A Bearer header that does not verify
//!    is a 401 even when a good cookie is present: a client that sends a
//!    token means it, and silently falling back would hide its bug.
//! 2. Otherwise the session cookie and a matching `X-Req-Token` (constant
//!    time). No credential at all: 401. Unknown or ended cookie: 401. Good
//!    cookie, wrong or missing token: 403.

use std::sync::Arc;

use actix_web::HttpRequest;
use actix_web::http::header;
use vestibule_actors::StreamKey;
use vestibule_actors::directory::SessionRecord;
use vestibule_actors::ids::{CookieSecret, SessionId};

use super::cookie::SESSION_COOKIE;
use super::error::ApiError;
use super::state::AppState;
use crate::auth::{AuthError, AuthUser};

/// Header carrying the session's request token.
pub const REQ_TOKEN_HEADER: &str = "x-req-token";

/// The raw Bearer token of the request, if any. A present but malformed
/// `Authorization` header is an error, not an absence.
fn bearer_token(req: &HttpRequest) -> Result<Option<&str>, ApiError> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::from(AuthError::Invalid))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim()))
        }
        _ => Err(AuthError::Invalid.into()),
    }
}

/// Verifies the Bearer token if one is present.
pub fn optional_bearer(req: &HttpRequest, state: &AppState) -> Result<Option<AuthUser>, ApiError> {
    match bearer_token(req)? {
        Some(token) => Ok(Some(state.keys.verify(token)?)),
        None => Ok(None),
    }
}

/// Requires a valid Bearer token.
/// Like [`optional_bearer`], with the teardown grace for expired tokens
/// (DELETE of the caller's own resource).
pub fn optional_bearer_for_teardown(
    req: &HttpRequest,
    state: &AppState,
) -> Result<Option<AuthUser>, ApiError> {
    match bearer_token(req)? {
        Some(token) => Ok(Some(state.keys.verify_for_teardown(token)?)),
        None => Ok(None),
    }
}

pub fn require_bearer(req: &HttpRequest, state: &AppState) -> Result<AuthUser, ApiError> {
    optional_bearer(req, state)?.ok_or_else(|| AuthError::Missing.into())
}

/// Requires a Bearer token with `role: admin` (401 without a valid token, 403 with a user token).
pub fn require_admin(req: &HttpRequest, state: &AppState) -> Result<AuthUser, ApiError> {
    let user = require_bearer(req, state)?;
    if !user.admin {
        return Err(ApiError::Forbidden("this route needs an admin token"));
    }
    Ok(user)
}

/// How a session-bound request authenticated.
#[derive(Debug, Clone)]
pub enum SessionCaller {
    /// By Bearer token; the identity owns (or administers) the session.
    Bearer {
        /// The session.
        record: Arc<SessionRecord>,
        /// The verified caller.
        user: AuthUser,
    },
    /// By cookie + matching `X-Req-Token`; echo the token on 2xx.
    Cookie {
        /// The session.
        record: Arc<SessionRecord>,
    },
}

impl SessionCaller {
    /// The session the request acts on.
    pub fn record(&self) -> &Arc<SessionRecord> {
        match self {
            SessionCaller::Bearer { record, .. } | SessionCaller::Cookie { record } => record,
        }
    }

    /// The request token to echo in a 2xx response (only to requests that presented it).
    pub fn echo_req_token(&self) -> Option<String> {
        match self {
            SessionCaller::Cookie { record } => Some(record.req_token.reveal()),
            SessionCaller::Bearer { .. } => None,
        }
    }
}

/// Which session a session-bound route acts on.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// A stream-scoped alias (`DELETE /whip`, `/whep`, `/live`): the caller's
    /// own session in this lobby.
    Alias,
    /// A resource URL naming the session's secret id.
    Resource(&'a str),
}

/// Options of [`session_caller`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionAuth {
    /// DELETE: an expired-within-grace token still works, and admins may act
    /// on any session by its resource URL.
    pub teardown: bool,
}

/// Resolves the session a request acts on, by the precedence rules above.
pub fn session_caller(
    req: &HttpRequest,
    state: &AppState,
    stream: &StreamKey,
    target: Target<'_>,
    opts: SessionAuth,
) -> Result<SessionCaller, ApiError> {
    if let Some(token) = bearer_token(req)? {
        let user = if opts.teardown {
            state.keys.verify_for_teardown(token)?
        } else {
            state.keys.verify(token)?
        };
        let record = match target {
            Target::Alias => state.directory.by_member(stream, &user.identity),
            Target::Resource(id) => SessionId::parse(id)
                .and_then(|id| state.directory.get(&id))
                .filter(|r| &r.stream == stream)
                .filter(|r| r.identity == user.identity || (opts.teardown && user.admin)),
        };
        // 404, not 403: a caller must not learn that someone else's session exists.
        let record = record.ok_or(ApiError::NotFound("no such session"))?;
        return Ok(SessionCaller::Bearer { record, user });
    }
    let cookie = req
        .cookie(SESSION_COOKIE)
        .ok_or(ApiError::Unauthorized("missing credentials"))?;
    let record = CookieSecret::parse(cookie.value())
        .and_then(|c| state.directory.by_cookie(&c))
        .filter(|r| &r.stream == stream)
        .ok_or(ApiError::Unauthorized("unknown or ended session"))?;
    let presented = req
        .headers()
        .get(REQ_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok());
    if !presented.is_some_and(|t| record.req_token.matches(t)) {
        return Err(ApiError::Forbidden("missing or wrong X-Req-Token"));
    }
    if let Target::Resource(id) = target
        && SessionId::parse(id) != Some(record.session_id)
    {
        return Err(ApiError::NotFound("no such session"));
    }
    Ok(SessionCaller::Cookie { record })
}

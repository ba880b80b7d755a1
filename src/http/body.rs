//! Request body checks shared by every handler: Content-Type and size.

use actix_web::HttpRequest;
use actix_web::http::header;
use actix_web::web::{self, Bytes, BytesMut};
use futures_util::StreamExt as _;

use super::error::ApiError;

/// Largest SDP body (offer, answer, sdpfrag).
pub const SDP_LIMIT: usize = 64 * 1024;
/// Largest JSON body.
pub const JSON_LIMIT: usize = 16 * 1024;

/// `application/sdp`.
pub const SDP: &str = "application/sdp";
/// `application/trickle-ice-sdpfrag`.
pub const SDPFRAG: &str = "application/trickle-ice-sdpfrag";
/// `application/json`.
pub const JSON: &str = "application/json";

/// The media type of the request without parameters, lower-cased.
pub fn media_type(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next()?.trim();
    (!essence.is_empty()).then(|| essence.to_ascii_lowercase())
}

/// Fails with 415 unless the Content-Type is `expected` (parameters such as
/// `charset` are accepted).
pub fn require_type(req: &HttpRequest, expected: &'static str) -> Result<(), ApiError> {
    match media_type(req) {
        Some(t) if t == expected => Ok(()),
        _ => Err(ApiError::UnsupportedMediaType { expected }),
    }
}

/// Reads the whole body, failing with 413 as soon as it exceeds `limit`
/// (before reading anything when Content-Length already says so).
pub async fn read_limited(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|_| ApiError::BadRequest("the request body could not be read".into()))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Reads a UTF-8 SDP body of at most [`SDP_LIMIT`] bytes with a sanity check;
/// full parsing happens in the media plane.
pub async fn read_sdp(req: &HttpRequest, payload: web::Payload) -> Result<String, ApiError> {
    require_type(req, SDP)?;
    let body = read_limited(req, payload, SDP_LIMIT).await?;
    if body.is_empty() {
        return Err(ApiError::BadRequest("the body must hold an SDP".into()));
    }
    let text =
        String::from_utf8(body.to_vec()).map_err(|_| ApiError::MalformedSdp("not UTF-8".into()))?;
    if !text.starts_with("v=0") {
        return Err(ApiError::MalformedSdp("an SDP starts with v=0".into()));
    }
    Ok(text)
}

/// Reads and decodes a JSON body of at most [`JSON_LIMIT`] bytes.
pub async fn read_json<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<T, ApiError> {
    require_type(req, JSON)?;
    let body = read_limited(req, payload, JSON_LIMIT).await?;
    serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))
}

/// Whether the request declares or carries no body.
pub fn declares_empty_body(req: &HttpRequest) -> bool {
    match req.headers().get(header::CONTENT_LENGTH) {
        Some(v) => v.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()) == Some(0),
        None => !req.headers().contains_key(header::TRANSFER_ENCODING),
    }
}

//! `PATCH` with `application/trickle-ice-sdpfrag` on WHIP and WHEP
//! resources (RFC 9725 §4.3, API.md "Lobby endpoints"): 204 for trickled
//! candidates (and end-of-candidates), 200 with the server's fragment and a
//! new `ETag` for an ICE restart (`If-Match: "*"`), 412 when `If-Match`
//! names another ICE session, 422 for a fragment of another session or a
//! restart of a server-offer WHEP connection.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use vestibule_actors::media::{IcePatch, IcePatchResult};

use super::body::{SDPFRAG, read_limited};
use super::error::ApiError;
use crate::media::sdpfrag;

/// Fragments are small: a few candidates and credentials.
const SDPFRAG_LIMIT: usize = 16 * 1024;

/// Reads and validates the fragment (400 when malformed).
pub(super) async fn read_patch(
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<IcePatch, ApiError> {
    let body = read_limited(req, payload, SDPFRAG_LIMIT).await?;
    let frag = sdpfrag::parse(&body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok(IcePatch {
        if_match: req
            .headers()
            .get(header::IF_MATCH)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        ufrag: frag.ufrag,
        pwd: frag.pwd,
        candidates: frag.candidates,
    })
}

/// The response for a patch result; `extra` adds headers (the request token).
pub(super) fn respond(
    result: IcePatchResult,
    extra: impl FnOnce(&mut actix_web::HttpResponseBuilder),
) -> HttpResponse {
    match result {
        IcePatchResult::Trickled => {
            let mut resp = HttpResponse::NoContent();
            extra(&mut resp);
            resp.finish()
        }
        IcePatchResult::Restarted { sdpfrag, etag } => {
            let mut resp = HttpResponse::Ok();
            resp.content_type(SDPFRAG)
                .insert_header((header::ETAG, etag));
            extra(&mut resp);
            resp.body(sdpfrag)
        }
    }
}

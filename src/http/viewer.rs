//! Plain viewers (API.md "Plain viewers"): WHEP without a WHIP session, in
//! client-offer mode, watching the lobby's program. Allowed when
//! `lobby.allow_viewers` is set, for the stream's owner, admins and tokens
//! whose `view` claim names the stream. Only Bearer credentials apply:
//! a viewer has no session cookie.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use vestibule_actors::StreamKey;
use vestibule_actors::ids::WhepId;
use vestibule_actors::lobby::{CloseViewer, OpenViewer, PatchViewerIce, ViewerError};
use vestibule_actors::media::IcePatch;

use super::body::{declares_empty_body, read_sdp};
use super::error::ApiError;
use super::state::AppState;
use super::streams::{find_stream, is_owner};
use crate::auth::AuthUser;
use crate::media::sdp_meta;

/// Seconds a viewer waits before retrying when the stream has no lobby.
const NO_LOBBY_RETRY_S: u64 = 5;

impl From<ViewerError> for ApiError {
    fn from(e: ViewerError) -> Self {
        match e {
            ViewerError::Full => ApiError::TooManyRequests {
                detail: "the lobby has lobby.max_viewers viewers",
                retry_after: 5,
            },
            ViewerError::Closing => no_lobby(),
            ViewerError::Media(m) => m.into(),
        }
    }
}

fn no_lobby() -> ApiError {
    ApiError::Conflict {
        detail: "the stream has no lobby yet",
        retry_after: Some(NO_LOBBY_RETRY_S),
    }
}

/// Whether a request by `user` is a plain viewer's: viewers are enabled
/// and the user has no session in the lobby. With viewers disabled such a
/// request stays a session request and gets its 404 ("no such session"),
/// as before viewers existed.
pub(super) fn is_viewer_request(state: &AppState, key: &StreamKey, user: &AuthUser) -> bool {
    state.settings.lobby.allow_viewers && state.directory.by_member(key, &user.identity).is_none()
}

/// `POST /whep` by a plain viewer: 201 with the answer.
pub(super) async fn create(
    req: &HttpRequest,
    key: &StreamKey,
    user: AuthUser,
    payload: web::Payload,
    state: &AppState,
    location: impl Fn(&WhepId) -> String,
) -> Result<HttpResponse, ApiError> {
    if !state.settings.lobby.allow_viewers {
        return Err(ApiError::Forbidden(
            "plain viewers are not allowed (lobby.allow_viewers)",
        ));
    }
    let row = find_stream(state, key).await?;
    let named = user.view.as_deref() == Some(&format!("{}/{}", key.space, key.stream));
    if !(named || user.admin || is_owner(&row, &user)) {
        return Err(ApiError::Forbidden(
            "this token may not watch the stream (view claim)",
        ));
    }
    if declares_empty_body(req) {
        return Err(ApiError::BadRequest(
            "a plain viewer sends an SDP offer (client-offer WHEP)".into(),
        ));
    }
    let offer = read_sdp(req, payload).await?;
    let offer =
        sdp_meta::prepare_offer(&offer).map_err(|e| ApiError::MalformedSdp(e.to_string()))?;
    let lobby = state.find_lobby(key).await?.ok_or_else(no_lobby)?;
    let (id, answer) = lobby
        .send(OpenViewer {
            identity: user.identity,
            offer: offer.sdp,
        })
        .await??;
    Ok(HttpResponse::Created()
        .content_type(super::body::SDP)
        .insert_header((header::LOCATION, location(&id)))
        .insert_header((header::ETAG, super::whep::ice_etag(&answer)))
        .body(answer))
}

/// `DELETE {whep Location}` of a plain viewer: 200, or 404.
pub(super) async fn delete(
    key: &StreamKey,
    user: &AuthUser,
    id: WhepId,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    let lobby = state
        .find_lobby(key)
        .await?
        .ok_or(ApiError::NotFound("no such WHEP connection"))?;
    let closed = lobby
        .send(CloseViewer {
            whep: id,
            identity: user.identity.clone(),
            admin: user.admin,
        })
        .await?;
    if !closed {
        return Err(ApiError::NotFound("no such WHEP connection"));
    }
    Ok(HttpResponse::Ok().finish())
}

/// `PATCH {whep Location}` of a plain viewer with an sdpfrag.
pub(super) async fn patch_ice(
    key: &StreamKey,
    user: &AuthUser,
    id: WhepId,
    patch: IcePatch,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    let lobby = state
        .find_lobby(key)
        .await?
        .ok_or(ApiError::NotFound("no such WHEP connection"))?;
    let result = lobby
        .send(PatchViewerIce {
            whep: id,
            identity: user.identity.clone(),
            admin: user.admin,
            patch,
        })
        .await?
        .ok_or(ApiError::NotFound("no such WHEP connection"))??;
    Ok(super::trickle::respond(result, |_| {}))
}

//! Live: restream the lobby's program to RTMP (API.md "Live"): start,
//! status, stop. Only the stream's owner controls it. The restream itself
//! is the `Restream` actor (src/live); this file checks, creates and
//! finds it.

use actix::{Addr, AsyncContext as _};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use vestibule_actors::StreamKey;
use vestibule_actors::ids::LiveId;
use vestibule_actors::live::{LiveLink, QueryLive, StopLive};
use vestibule_actors::lobby::{AttachLive, AttachLiveError, DetachLive, FindLive, Lobby};

use super::body::read_json;
use super::credentials::{SessionAuth, Target, optional_bearer, session_caller};
use super::error::ApiError;
use super::state::AppState;
use super::streams::{find_stream, is_owner, stream_key};
use crate::live::destination::{Destination, DestinationError};
use crate::live::ffmpeg::free_port_pairs;
use crate::live::restream::{Restream, RestreamSetup};

/// `POST /live/start` body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartLive {
    rtmp_endpoint: String,
    rtmp_key: String,
}

impl std::fmt::Debug for StartLive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StartLive(***)")
    }
}

impl From<DestinationError> for ApiError {
    fn from(e: DestinationError) -> Self {
        match e {
            DestinationError::Invalid(why) => ApiError::BadRequest(why.to_string()),
            DestinationError::Refused(why) => ApiError::Forbidden(why),
            DestinationError::Unresolved => {
                ApiError::BadRequest("the RTMP host does not resolve".to_string())
            }
        }
    }
}

/// Only the stream's owner may control its live output: by Bearer token, or
/// by the owner's session cookie + request token.
async fn require_owner(
    req: &HttpRequest,
    state: &AppState,
    key: &StreamKey,
) -> Result<(), ApiError> {
    // Credentials first: an anonymous caller learns nothing about which
    // streams exist (401 before 404).
    let owner = match optional_bearer(req, state)? {
        Some(user) => {
            let row = find_stream(state, key).await?;
            is_owner(&row, &user)
        }
        None => {
            let owner = session_caller(req, state, key, Target::Alias, SessionAuth::default())?
                .record()
                .is_owner;
            find_stream(state, key).await?;
            owner
        }
    };
    if !owner {
        return Err(ApiError::Forbidden(
            "only the stream owner controls its live output",
        ));
    }
    Ok(())
}

async fn find_lobby(state: &AppState, key: &StreamKey) -> Result<Addr<Lobby>, ApiError> {
    state
        .find_lobby(key)
        .await?
        .ok_or(ApiError::NotFound("the stream has no lobby"))
}

/// The lobby's live restream; with `id`, only when it is that one.
async fn find_live(
    state: &AppState,
    key: &StreamKey,
    id: Option<&str>,
) -> Result<(Addr<Lobby>, LiveLink), ApiError> {
    let lobby = find_lobby(state, key).await?;
    let link = lobby
        .send(FindLive)
        .await?
        .filter(|link| id.is_none_or(|id| link.id.matches(id)))
        .ok_or(ApiError::NotFound("no such live restream"))?;
    Ok((lobby, link))
}

fn live_location(state: &AppState, key: &StreamKey, id: &LiveId) -> String {
    state.public_path(&format!(
        "/space/{}/stream/{}/live/{}",
        key.space,
        key.stream,
        id.reveal()
    ))
}

/// `POST /live/start` and `POST /live`.
pub(super) async fn start(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let key = stream_key(&path)?;
    require_owner(&req, &state, &key).await?;
    let body: StartLive = read_json(&req, payload).await?;
    let destination = Destination::parse(&body.rtmp_endpoint, &body.rtmp_key)?;
    let lobby = find_lobby(&state, &key).await?;
    if !state.live.is_available() {
        return Err(ApiError::Unavailable {
            detail: "live restreaming is unavailable: ffmpeg was not found",
            retry_after: 60,
        });
    }
    if lobby.send(FindLive).await?.is_some() {
        return Err(already_live());
    }
    // Checked here for a clear 403, and again by the restream before every connect.
    destination.check(&state.live.config).await?;
    let ports = free_port_pairs().map_err(|e| ApiError::Internal(e.to_string()))?;
    let id = LiveId::random();
    let ctx = actix::Context::<Restream>::new();
    let addr = ctx.address();
    let link = LiveLink {
        id,
        stop: addr.clone().recipient(),
        status: addr.clone().recipient(),
    };
    let home = match lobby.send(AttachLive { link }).await? {
        Ok(home) => home,
        Err(AttachLiveError::AlreadyLive) => return Err(already_live()),
        Err(AttachLiveError::Closing) => return Err(ApiError::NotFound("the stream has no lobby")),
    };
    let restream = Restream::new(RestreamSetup {
        id,
        stream: key.clone(),
        lobby,
        home,
        media: state.media.clone(),
        destination,
        config: std::sync::Arc::clone(&state.live.config),
        work_dir: state.live.work_dir.clone(),
        metrics: state.live.metrics.clone(),
        ports,
    });
    // The link is attached before the actor runs, so a concurrent start
    // sees it and gets 409.
    ctx.run(restream);
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, live_location(&state, &key, &id)))
        .json(json!({ "resource": id.reveal() })))
}

fn already_live() -> ApiError {
    ApiError::Conflict {
        detail: "the lobby is already live",
        retry_after: None,
    }
}

async fn status(
    state: &AppState,
    key: &StreamKey,
    id: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    let (_, live) = find_live(state, key, id).await?;
    let status = live.status.send(QueryLive).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(status))
}

async fn stop(
    state: &AppState,
    key: &StreamKey,
    id: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    let (lobby, live) = find_live(state, key, id).await?;
    // Detached before the 204: a GET or a new start right after the DELETE
    // sees no live (ffmpeg stops in the background).
    lobby.send(DetachLive { id: live.id }).await?;
    live.stop.do_send(StopLive { reason: "deleted" });
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /live` and `DELETE /live`: the lobby's restream.
pub(super) async fn alias(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let key = stream_key(&path)?;
    require_owner(&req, &state, &key).await?;
    if req.method() == actix_web::http::Method::DELETE {
        stop(&state, &key, None).await
    } else {
        status(&state, &key, None).await
    }
}

/// `GET /live/{liveId}` and `DELETE /live/{liveId}`.
pub(super) async fn resource(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (space, stream, live) = path.into_inner();
    let key = stream_key(&(space, stream))?;
    require_owner(&req, &state, &key).await?;
    if req.method() == actix_web::http::Method::DELETE {
        stop(&state, &key, Some(&live)).await
    } else {
        status(&state, &key, Some(&live)).await
    }
}

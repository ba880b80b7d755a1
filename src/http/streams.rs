//! Streams (admin): PUT/GET/DELETE one stream, GET a space's streams.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use vestibule_actors::StreamKey;
use vestibule_actors::lobby::DescribeLobby;
use vestibule_actors::registry::{CloseStreamLobby, ListLobbies};
use vestibule_actors::snapshot::LobbySnapshot;

use super::body::read_json;
use super::credentials::{require_admin, require_bearer};
use super::error::ApiError;
use super::is_valid_name;
use super::state::AppState;
use crate::auth::{AuthUser, is_valid_user_id};
use crate::store::{PutOutcome, StreamRow};

/// The stream named by a path, or 404 when the names cannot exist.
pub(super) fn stream_key(path: &(String, String)) -> Result<StreamKey, ApiError> {
    if is_valid_name(&path.0) && is_valid_name(&path.1) {
        Ok(StreamKey::new(&path.0, &path.1))
    } else {
        Err(ApiError::NotFound("no such stream"))
    }
}

/// The stored stream, or 404.
pub(super) async fn find_stream(state: &AppState, key: &StreamKey) -> Result<StreamRow, ApiError> {
    let store = state.store.clone();
    let key = key.clone();
    web::block(move || store.get_stream(&key.space, &key.stream))
        .await??
        .ok_or(ApiError::NotFound("no such stream"))
}

/// The stored stream; with `streams.auto_create` an unknown stream (and its
/// space) is created with the caller as owner.
pub(super) async fn find_or_create_stream(
    state: &AppState,
    key: &StreamKey,
    user: &AuthUser,
) -> Result<StreamRow, ApiError> {
    match find_stream(state, key).await {
        Err(ApiError::NotFound(_)) if state.settings.streams.auto_create => {
            let store = state.store.clone();
            let (k, owner, home) = (
                key.clone(),
                user.identity.user_id.clone(),
                user.identity.home.clone(),
            );
            web::block(move || store.put_stream(&k.space, &k.stream, &owner, home.as_deref(), ""))
                .await??;
            tracing::info!(stream = %key, "stream auto-created");
            find_stream(state, key).await
        }
        other => other,
    }
}

/// Whether `user` owns `row`.
pub(super) fn is_owner(row: &StreamRow, user: &AuthUser) -> bool {
    row.owner == user.identity.user_id && row.owner_home == user.identity.home
}

/// Body of `PUT /space/{s}/stream/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct PutStream {
    owner: String,
    #[serde(default)]
    owner_home: Option<String>,
    #[serde(default)]
    title: Option<String>,
}

/// `PUT /space/{s}/stream/{id}` (admin): 201 created, 200 updated.
pub(super) async fn put(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&req, &state)?;
    let (space, stream) = path.into_inner();
    if !is_valid_name(&space) || !is_valid_name(&stream) {
        return Err(ApiError::BadRequest(
            "space and stream ids match [A-Za-z0-9._-]{1,64}".into(),
        ));
    }
    let body: PutStream = read_json(&req, payload).await?;
    if !is_valid_user_id(&body.owner) {
        return Err(ApiError::BadRequest("owner is not a valid userId".into()));
    }
    let title = body.title.unwrap_or_default();
    if title.chars().count() > 256 {
        return Err(ApiError::BadRequest(
            "title is longer than 256 characters".into(),
        ));
    }
    let store = state.store.clone();
    let (s, st) = (space.clone(), stream.clone());
    let outcome = web::block(move || {
        store.put_stream(&s, &st, &body.owner, body.owner_home.as_deref(), &title)
    })
    .await??;
    let row = find_stream(&state, &StreamKey::new(space, stream)).await?;
    Ok(match outcome {
        PutOutcome::Created => HttpResponse::Created().json(row),
        PutOutcome::Updated => HttpResponse::Ok().json(row),
    })
}

/// One stream in a listing or a GET.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct StreamView {
    #[serde(flatten)]
    row: StreamRow,
    /// Whether a lobby is open now.
    lobby_open: bool,
    /// Whether the lobby is live (restreaming) now.
    live: bool,
    /// Membership, only for the owner, admins and the lobby's participants.
    #[serde(skip_serializing_if = "Option::is_none")]
    lobby: Option<LobbySnapshot>,
}

/// `GET /space/{s}/streams` (any valid token).
pub(super) async fn list(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_bearer(&req, &state)?;
    let space = path.into_inner();
    if !is_valid_name(&space) {
        return Err(ApiError::NotFound("no such space"));
    }
    let store = state.store.clone();
    let rows = web::block(move || store.list_streams(&space))
        .await??
        .ok_or(ApiError::NotFound("no such space"))?;
    let open = state.registry.send(ListLobbies).await?;
    let views: Vec<StreamView> = rows
        .into_iter()
        .map(|row| {
            let key = StreamKey::new(&row.space, &row.stream);
            StreamView {
                lobby_open: open.contains(&key),
                live: false,
                lobby: None,
                row,
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(views))
}

/// `GET /space/{s}/stream/{id}` (any valid token; membership for insiders).
pub(super) async fn get(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let user = require_bearer(&req, &state)?;
    let key = stream_key(&path)?;
    let row = find_stream(&state, &key).await?;
    let lobby = state.find_lobby(&key).await?;
    let insider = user.admin
        || is_owner(&row, &user)
        || state.directory.by_member(&key, &user.identity).is_some();
    let snapshot = match (&lobby, insider) {
        (Some(addr), true) => addr.send(DescribeLobby).await.ok(),
        _ => None,
    };
    Ok(HttpResponse::Ok().json(StreamView {
        lobby_open: lobby.is_some(),
        live: false,
        lobby: snapshot,
        row,
    }))
}

/// `DELETE /space/{s}/stream/{id}` (admin): 204, closes its lobby.
pub(super) async fn delete(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&req, &state)?;
    let key = stream_key(&path)?;
    let store = state.store.clone();
    let k = key.clone();
    if !web::block(move || store.delete_stream(&k.space, &k.stream)).await?? {
        return Err(ApiError::NotFound("no such stream"));
    }
    state
        .registry
        .send(CloseStreamLobby { stream: key })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

//! WHIP lobby sessions with our own str0m client over real UDP on
//! 127.0.0.1: headers, counting, mute, client offers, `i=` purposes,
//! duplicates and teardown.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Server, ServerSpec, metric, stream_state, wait_metric};
use serde_json::Value;
use vestibule::client::encoded::{EncodeSpec, EncodedMedia};
use vestibule::client::{PublishOptions, Publisher};

const WHIP: &str = "/space/demo/stream/demo/whip";
const STREAM: &str = "/space/demo/stream/demo";
const VIDEO: &str = "vestibule_rtp_packets_received_total{kind=\"video\"}";
const AUDIO: &str = "vestibule_rtp_packets_received_total{kind=\"audio\"}";

async fn publish(server: &Server, user: &str, opts: PublishOptions) -> Publisher {
    let publisher = Publisher::connect(&server.base, WHIP, &server.token(user), opts)
        .await
        .expect("201");
    assert!(
        publisher.wait_connected(Duration::from_secs(5)).await,
        "connected and channel open"
    );
    publisher
}

fn tracks_of(state: &Value, user: &str) -> Vec<Value> {
    state["lobby"]["participants"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["userId"] == user)
        .flat_map(|p| p["tracks"].as_array().cloned().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn a_publisher_connects_and_its_packets_are_counted() {
    let server = Server::start(ServerSpec::default()).await;
    let token = server.token("dev");
    let mut publisher = publish(&server, "dev", PublishOptions::default()).await;
    let r = &publisher.response;
    assert_eq!(r.status, 201);
    assert!(
        r.location.starts_with("/space/demo/stream/demo/whip/"),
        "{}",
        r.location
    );
    assert_eq!(
        r.location.rsplit('/').next().map(str::len),
        Some(22),
        "128-bit id"
    );
    assert!(r.etag.as_deref().is_some_and(|e| e.starts_with('"')));
    assert_eq!(r.req_token.as_deref().map(str::len), Some(22));
    let cookie = r.set_cookie.as_deref().expect("cookie");
    assert!(
        cookie.contains("Path=/space/demo/stream/demo") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    assert!(r.answer.contains("a=ice-lite"));
    assert!(
        r.answer.contains("a=msid-semantic"),
        "answers carry msid-semantic"
    );
    assert!(r.answer.contains("127.0.0.1"), "host candidate");

    let video = wait_metric(&server, VIDEO, Duration::from_secs(3), |v| v > 10.0).await;
    let audio = wait_metric(&server, AUDIO, Duration::from_secs(3), |v| v > 10.0).await;
    assert!(video > 10.0, "video packets counted: {video}");
    assert!(audio > 10.0, "audio packets counted: {audio}");
    assert_eq!(metric(&server, "vestibule_sessions_connected").await, 1.0);
    assert!(metric(&server, "vestibule_peer_setup_seconds_count").await >= 1.0);

    let state = stream_state(&server, STREAM, "dev").await;
    let tracks = tracks_of(&state, "dev");
    assert_eq!(tracks.len(), 2, "{state}");
    let participant = state["lobby"]["participants"][0]["participantId"]
        .as_str()
        .unwrap_or_default();
    assert!(
        !r.location.contains(participant),
        "public id differs from the secret id"
    );

    assert_eq!(publisher.delete(&token).await.expect("delete"), 200);
    for family in [
        "vestibule_sessions",
        "vestibule_media_peers",
        "vestibule_lobbies",
        "vestibule_tracks",
        "vestibule_sessions_connected",
    ] {
        let v = wait_metric(&server, family, Duration::from_secs(2), |v| v == 0.0).await;
        assert_eq!(v, 0.0, "{family} back to zero");
    }
    let again = reqwest::Client::new()
        .delete(server.url(&publisher.response.location))
        .bearer_auth(&token)
        .send()
        .await
        .expect("delete");
    assert_eq!(again.status(), 404, "ended resource");
}

#[tokio::test]
async fn srtp_packets_with_a_corrupted_auth_tag_are_not_counted() {
    let server = Server::start(ServerSpec::default()).await;
    let publisher = publish(&server, "dev", PublishOptions::default()).await;
    wait_metric(&server, VIDEO, Duration::from_secs(3), |v| v > 5.0).await;
    publisher
        .state
        .corrupt_rtp
        .store(true, std::sync::atomic::Ordering::Release);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (v1, d1) = (
        metric(&server, VIDEO).await,
        metric(&server, "vestibule_datagrams_received_total").await,
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (v2, d2) = (
        metric(&server, VIDEO).await,
        metric(&server, "vestibule_datagrams_received_total").await,
    );
    assert!(d2 - d1 > 20.0, "corrupted packets did arrive: {}", d2 - d1);
    assert_eq!(v2, v1, "no corrupted packet was counted");
    publisher
        .state
        .corrupt_rtp
        .store(false, std::sync::atomic::Ordering::Release);
    let v3 = wait_metric(&server, VIDEO, Duration::from_secs(2), |v| v > v2 + 10.0).await;
    assert!(v3 > v2 + 10.0, "counting resumes with intact packets");
}

#[tokio::test]
async fn mute_messages_change_the_track_state() {
    let server = Server::start(ServerSpec::default()).await;
    let publisher = publish(&server, "dev", PublishOptions::default()).await;
    let mid = publisher.mid(true).expect("video mid").to_string();
    publisher.send_mute(1, &mid, true);
    let mut muted = false;
    for _ in 0..40 {
        let state = stream_state(&server, STREAM, "dev").await;
        muted = tracks_of(&state, "dev")
            .iter()
            .any(|t| t["kind"] == "video" && t["mute"] == true);
        if muted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(muted, "video track shows muted");
    let state = stream_state(&server, STREAM, "dev").await;
    assert!(
        tracks_of(&state, "dev")
            .iter()
            .any(|t| t["kind"] == "audio" && t["mute"] == false)
    );
    publisher.send_mute(2, "no-such-mid", true);
    let ignored = wait_metric(
        &server,
        "vestibule_signal_ignored_total{reason=\"mute_unknown_mid\"}",
        Duration::from_secs(2),
        |v| v >= 1.0,
    )
    .await;
    assert_eq!(ignored, 1.0, "unknown mid counted");
}

#[tokio::test]
async fn a_client_offer_adds_a_second_video_track() {
    let server = Server::start(ServerSpec::default()).await;
    let publisher = publish(&server, "dev", PublishOptions::default()).await;
    wait_metric(&server, VIDEO, Duration::from_secs(3), |v| v > 10.0).await;
    let a = metric(&server, VIDEO).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before_rate = metric(&server, VIDEO).await - a;

    let (id, number) = publisher.add_video().await.expect("offer sent");
    let mut answer = None;
    for _ in 0..60 {
        answer = publisher
            .received()
            .into_iter()
            .filter_map(|m| serde_json::from_str::<Value>(&m).ok())
            .find(|m| m["type"] == 2);
        if answer.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answer = answer.expect("an answer on the signal channel");
    assert_eq!(answer["id"], id, "the answer echoes the offer's id");
    assert_eq!(answer["data"]["number"], number);
    assert_eq!(answer["data"]["sdp"]["type"], "answer");

    let mut videos = 0;
    for _ in 0..40 {
        let state = stream_state(&server, STREAM, "dev").await;
        videos = tracks_of(&state, "dev")
            .iter()
            .filter(|t| t["kind"] == "video")
            .count();
        if videos == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(videos, 2, "the lobby shows the new video track");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let b = metric(&server, VIDEO).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after_rate = metric(&server, VIDEO).await - b;
    assert!(
        after_rate > before_rate * 1.5,
        "packets of both tracks counted: {before_rate} -> {after_rate}"
    );
    assert_eq!(
        metric(&server, "vestibule_tracks{kind=\"video\"}").await,
        2.0
    );
}

#[tokio::test]
async fn only_the_owner_may_publish_main_tracks() {
    let server = Server::start(ServerSpec::default()).await;
    let main = PublishOptions {
        info: Some((2, 2)),
        ..PublishOptions::default()
    };
    let _owner = publish(&server, "dev", main.clone()).await;
    let _guest = publish(&server, "bob", main).await;
    let state = stream_state(&server, STREAM, "dev").await;
    let owner_tracks = tracks_of(&state, "dev");
    let guest_tracks = tracks_of(&state, "bob");
    assert_eq!(owner_tracks.len(), 2);
    assert!(
        owner_tracks.iter().all(|t| t["purpose"] == "main"),
        "{state}"
    );
    assert_eq!(guest_tracks.len(), 2);
    assert!(
        guest_tracks.iter().all(|t| t["purpose"] == "guest"),
        "{state}"
    );
    let muted = PublishOptions {
        info: Some((1, 1)),
        ..PublishOptions::default()
    };
    let _carol = publish(&server, "carol", muted).await;
    let state = stream_state(&server, STREAM, "dev").await;
    assert!(
        tracks_of(&state, "carol")
            .iter()
            .all(|t| t["mute"] == true && t["purpose"] == "guest")
    );
}

#[tokio::test]
async fn a_second_whip_by_the_same_user_replaces_the_first() {
    let server = Server::start(ServerSpec::default()).await;
    let token = server.token("bob");
    let first = publish(&server, "bob", PublishOptions::default()).await;
    let _second = publish(&server, "bob", PublishOptions::default()).await;
    let state = stream_state(&server, STREAM, "bob").await;
    assert_eq!(
        state["lobby"]["participants"].as_array().map(Vec::len),
        Some(1)
    );
    let gone = reqwest::Client::new()
        .delete(server.url(&first.response.location))
        .bearer_auth(&token)
        .send()
        .await
        .expect("delete");
    assert_eq!(gone.status(), 404, "the replaced session is gone");
    let replaced = wait_metric(
        &server,
        "vestibule_sessions_ended_total{reason=\"replaced\"}",
        Duration::from_secs(2),
        |v| v >= 1.0,
    )
    .await;
    assert_eq!(replaced, 1.0);
    assert_eq!(
        metric(&server, "vestibule_media_peers").await,
        1.0,
        "the old peer was closed"
    );
}

#[tokio::test]
async fn a_second_whip_by_the_same_user_is_refused_under_reject() {
    let server =
        Server::start(ServerSpec::default().env("VESTIBULE__LOBBY__ON_DUPLICATE_USER", "reject"))
            .await;
    let _first = publish(&server, "bob", PublishOptions::default()).await;
    let err = Publisher::connect(
        &server.base,
        WHIP,
        &server.token("bob"),
        PublishOptions::default(),
    )
    .await
    .expect_err("409");
    assert!(err.to_string().contains("409"), "{err}");
    assert_eq!(metric(&server, "vestibule_media_peers").await, 1.0);
}

#[tokio::test]
async fn audio_only_video_only_and_channel_only_sessions_work() {
    let server = Server::start(ServerSpec::default()).await;
    let audio_only = PublishOptions {
        video: false,
        ..PublishOptions::default()
    };
    let video_only = PublishOptions {
        audio: false,
        ..PublishOptions::default()
    };
    let viewer = PublishOptions {
        audio: false,
        video: false,
        ..PublishOptions::default()
    };
    let _a = publish(&server, "a", audio_only).await;
    let _v = publish(&server, "v", video_only).await;
    let _d = publish(&server, "d", viewer).await;
    let state = stream_state(&server, STREAM, "dev").await;
    assert_eq!(tracks_of(&state, "a").len(), 1);
    assert_eq!(tracks_of(&state, "v").len(), 1);
    assert_eq!(tracks_of(&state, "d").len(), 0);
    assert_eq!(metric(&server, "vestibule_sessions_connected").await, 3.0);
}

#[tokio::test]
async fn configured_ice_servers_are_sent_as_link_headers() {
    let spec = ServerSpec {
        config_file: Some(
            "[media]\nice_servers = [\n  { urls = \"stun:stun.example.org:3478\" },\n  { urls = \"turn:turn.example.org:3478?transport=udp\", username = \"u1\", credential = \"p1\" },\n]\n"
                .into(),
        ),
        ..ServerSpec::default()
    };
    let server = Server::start(spec).await;
    let publisher = publish(&server, "dev", PublishOptions::default()).await;
    let links = &publisher.response.links;
    assert_eq!(links.len(), 2, "{links:?}");
    assert_eq!(links[0], "<stun:stun.example.org:3478>; rel=\"ice-server\"");
    assert!(links[1].starts_with("<turn:turn.example.org:3478?transport=udp>; rel=\"ice-server\""));
    assert!(links[1].contains("username=\"u1\"") && links[1].contains("credential=\"p1\""));
    assert!(links[1].contains("credential-type=\"password\""));
    let options = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, server.url(WHIP))
        .send()
        .await
        .expect("options");
    assert!(options.headers().get("link").is_none(), "never on OPTIONS");
}

#[tokio::test]
async fn a_publisher_of_real_h264_and_opus_is_counted() {
    // Restreaming tests need decodable media; this pins the publisher side.
    let dir = tempfile::tempdir().expect("tempdir");
    let media = match EncodedMedia::generate(dir.path(), &EncodeSpec::default()) {
        Ok(media) => Arc::new(media),
        Err(e) => {
            eprintln!("skipped: cannot encode media ({e}); apt-get install ffmpeg");
            return;
        }
    };
    let server = Server::start(ServerSpec::default()).await;
    let opts = PublishOptions {
        media: Some(Arc::clone(&media)),
        ..PublishOptions::default()
    };
    let publisher = publish(&server, "dev", opts).await;
    let answer = &publisher.response.answer;
    assert!(answer.contains("H264/90000"), "{answer}");
    assert!(!answer.contains("VP8"), "{answer}");
    assert!(answer.contains("packetization-mode=1"), "{answer}");
    // API.md "Codecs": the answer keeps the publisher's profile-level-id.
    let profile = format!("profile-level-id={:06x}", media.profile_level_id());
    assert!(answer.contains(&profile), "{profile} in {answer}");
    // 15 fps plus a SPS/PPS packet a second; 50 Opus packets a second.
    let video = wait_metric(&server, VIDEO, Duration::from_secs(5), |v| v >= 30.0).await;
    let audio = wait_metric(&server, AUDIO, Duration::from_secs(5), |v| v >= 100.0).await;
    assert!(video >= 30.0, "video packets counted: {video}");
    assert!(audio >= 100.0, "audio packets counted: {audio}");
    let logs = server.logs();
    assert!(
        !logs.lines().any(|l| l.contains(" ERROR ")),
        "no errors: {logs}"
    );
}

#[tokio::test]
async fn a_publisher_without_any_data_channel_leaves_the_worker_responsive() {
    // OBS-style WHIP (media only). The signal-channel fallback deadline
    // used to stay in the past for such a peer and spin its worker, so
    // the next request to that worker timed out with 503.
    let server = Server::start(ServerSpec::default().env("VESTIBULE__MEDIA__WORKERS", "1")).await;
    let opts = PublishOptions {
        channel: None,
        ..PublishOptions::default()
    };
    let _plain = publish(&server, "dev", opts).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let started = std::time::Instant::now();
    let _guest = publish(&server, "guest", PublishOptions::default()).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the worker answered in {:?}",
        started.elapsed()
    );
}

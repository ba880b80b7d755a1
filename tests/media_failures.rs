//! WHIP error codes, garbage on the data channel and the UDP port, peers
//! that vanish or never connect: the server answers clearly, cleans up,
//! and keeps serving. Real binary, real UDP on 127.0.0.1.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::{Server, ServerSpec, metric, stream_state, wait_metric};
use reqwest::StatusCode;
use str0m::media::{Direction, MediaKind};
use str0m::{Candidate, RtcConfig};
use vestibule::client::{PublishOptions, Publisher};

const WHIP: &str = "/space/demo/stream/demo/whip";
const STREAM: &str = "/space/demo/stream/demo";

/// An offer from a str0m client that is never driven afterwards.
fn offer(audio: usize, video: usize, channel: bool, pcmu_only: bool) -> String {
    let config = RtcConfig::new().clear_codecs();
    let config = if pcmu_only {
        config.enable_pcmu(true, false)
    } else {
        config.enable_opus(true, false).enable_vp8(true)
    };
    let mut rtc = config.build(Instant::now());
    let addr = "127.0.0.1:9".parse().expect("addr");
    rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
    let mut change = rtc.sdp_api();
    for _ in 0..audio {
        change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    }
    for _ in 0..video {
        change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    }
    if channel {
        change.add_channel("signal".into());
    }
    change.apply().expect("changes").0.to_sdp_string()
}

async fn post(server: &Server, user: &str, body: String) -> reqwest::Response {
    reqwest::Client::new()
        .post(server.url(WHIP))
        .bearer_auth(server.token(user))
        .header("Content-Type", "application/sdp")
        .body(body)
        .send()
        .await
        .expect("post")
}

async fn problem(resp: reqwest::Response) -> (StatusCode, String) {
    let status = resp.status();
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    (status, resp.text().await.unwrap_or_default())
}

#[tokio::test]
async fn whip_errors_get_clear_statuses_and_leave_nothing_behind() {
    let server = Server::start(
        ServerSpec::default()
            .env("VESTIBULE__LOBBY__MAX_SESSIONS", "2")
            .env("VESTIBULE__LOBBY__MAX_TRACKS", "3")
            .env("VESTIBULE__SECURITY__MAX_SESSIONS_PER_USER", "1"),
    )
    .await;
    let garbage = "v=0\r\nthis is not an sdp\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n".to_string();
    let (status, body) = problem(post(&server, "a", garbage).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = problem(post(&server, "a", String::new()).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "empty body");
    let (status, body) = problem(post(&server, "a", offer(3, 2, true, false)).await).await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "5 media sections > 4: {body}"
    );
    let (status, body) = problem(post(&server, "a", offer(1, 0, true, true)).await).await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "PCMU only: {body}"
    );
    let r = reqwest::Client::new()
        .post(server.url("/space/demo/stream/nope/whip"))
        .bearer_auth(server.token("a"))
        .header("Content-Type", "application/sdp")
        .body(offer(1, 1, true, false))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "unknown stream");
    let r = reqwest::Client::new()
        .post(server.url(WHIP))
        .header("Content-Type", "application/sdp")
        .body(offer(1, 1, true, false))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        metric(&server, "vestibule_sessions").await,
        0.0,
        "failed offers leave no session"
    );
    assert_eq!(metric(&server, "vestibule_media_peers").await, 0.0);

    // Two tracks, then a second A+V publisher would make four > 3.
    assert_eq!(
        post(&server, "a", offer(1, 1, true, false)).await.status(),
        StatusCode::CREATED
    );
    let r = post(&server, "b", offer(1, 1, true, false)).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "max_tracks");
    assert!(r.headers().contains_key("retry-after"));
    assert!(r.text().await.unwrap_or_default().contains("lobby-full"));
    assert_eq!(
        post(&server, "b", offer(0, 0, true, false)).await.status(),
        StatusCode::CREATED,
        "a viewer fits"
    );
    let r = post(&server, "c", offer(0, 0, true, false)).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "max_sessions");
    // Per-user limit across lobbies: "a" already has its one session.
    let admin = server.admin_token();
    reqwest::Client::new()
        .put(server.url("/space/demo/stream/other"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"owner": "dev"}))
        .send()
        .await
        .expect("put");
    let r = reqwest::Client::new()
        .post(server.url("/space/demo/stream/other/whip"))
        .bearer_auth(server.token("a"))
        .header("Content-Type", "application/sdp")
        .body(offer(1, 0, true, false))
        .send()
        .await
        .expect("post");
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "max_sessions_per_user"
    );
    assert_eq!(metric(&server, "vestibule_sessions").await, 2.0);
    assert_eq!(
        metric(&server, "vestibule_media_peers").await,
        2.0,
        "refused joins left no peer"
    );
    assert_eq!(
        reqwest::get(server.url("/health"))
            .await
            .expect("health")
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn offers_the_server_must_tolerate_are_answered() {
    let server = Server::start(ServerSpec::default()).await;
    let base = offer(1, 1, true, false);
    assert!(base.contains("a=candidate"), "str0m includes candidates");
    // No candidates at all (trickle clients).
    let no_candidates: String = base
        .split("\r\n")
        .filter(|l| !l.starts_with("a=candidate") && !l.starts_with("a=end-of-candidates"))
        .map(|l| format!("{l}\r\n"))
        .collect::<String>()
        .trim_end_matches("\r\n")
        .to_string()
        + "\r\n";
    assert_eq!(
        post(&server, "u1", no_candidates).await.status(),
        StatusCode::CREATED
    );
    // a=setup:active instead of actpass.
    assert_eq!(
        post(
            &server,
            "u2",
            base.replace("a=setup:actpass", "a=setup:active")
        )
        .await
        .status(),
        StatusCode::CREATED
    );
    // a=setup:passive (ffmpeg's WHIP muxer): the server becomes the DTLS client.
    assert_eq!(
        post(
            &server,
            "u3",
            base.replace("a=setup:actpass", "a=setup:passive")
        )
        .await
        .status(),
        StatusCode::CREATED
    );
    // Several fingerprints (RFC 8122 allows one per hash function).
    let fingerprint = base
        .lines()
        .find(|l| l.starts_with("a=fingerprint:"))
        .expect("fingerprint")
        .to_string();
    let sha1 = "a=fingerprint:sha-1 4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B:19:E5:7C:AB";
    let two = base.replacen(&fingerprint, &format!("{fingerprint}\r\n{sha1}"), 1);
    assert_eq!(
        post(&server, "u4", two).await.status(),
        StatusCode::CREATED,
        "two fingerprints"
    );
    // Media-level i= lines anywhere in a section.
    let with_info = base.replace("a=mid:", "i=2 2 cam\r\na=mid:");
    assert_eq!(
        post(&server, "dev", with_info).await.status(),
        StatusCode::CREATED
    );
    let state = stream_state(&server, STREAM, "dev").await;
    let dev = state["lobby"]["participants"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["userId"] == "dev").cloned())
        .expect("dev");
    assert_eq!(
        dev["tracks"].as_array().map(Vec::len),
        Some(2),
        "i= did not truncate the offer: {state}"
    );
}

#[tokio::test]
async fn garbage_on_the_signal_channel_is_counted_and_ignored() {
    let server =
        Server::start(ServerSpec::default().env("VESTIBULE__SIGNAL__MAX_MESSAGE_BYTES", "2048"))
            .await;
    let publisher = Publisher::connect(
        &server.base,
        WHIP,
        &server.token("dev"),
        PublishOptions::default(),
    )
    .await
    .expect("201");
    assert!(publisher.wait_connected(Duration::from_secs(5)).await);
    publisher.send_signal(b"not json at all".to_vec());
    publisher.send_signal(br#"{"id":1,"type":9,"data":{}}"#.to_vec());
    publisher.send_signal(br#"{"id":2,"type":3}"#.to_vec());
    publisher.send_signal(vec![0xff, 0xfe, 0x00]);
    let dropped = wait_metric(
        &server,
        "vestibule_signal_dropped_total",
        Duration::from_secs(3),
        |v| v >= 4.0,
    )
    .await;
    assert!(dropped >= 4.0, "malformed messages counted: {dropped}");
    // The session still works: a valid mute goes through.
    let mid = publisher.mid(false).expect("audio mid").to_string();
    publisher.send_mute(3, &mid, true);
    let mut muted = false;
    for _ in 0..40 {
        let state = stream_state(&server, STREAM, "dev").await;
        muted = state["lobby"]["participants"][0]["tracks"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t["kind"] == "audio" && t["mute"] == true);
        if muted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(muted, "valid messages still work after garbage");
    assert_eq!(metric(&server, "vestibule_sessions_connected").await, 1.0);
}

#[tokio::test]
async fn three_signal_violations_close_the_session() {
    let server = Server::start(
        ServerSpec::default()
            .env("VESTIBULE__SIGNAL__MAX_MESSAGE_BYTES", "1024")
            .env("VESTIBULE__SIGNAL__MAX_MESSAGES_PER_S", "2"),
    )
    .await;
    let publisher = Publisher::connect(
        &server.base,
        WHIP,
        &server.token("dev"),
        PublishOptions::default(),
    )
    .await
    .expect("201");
    assert!(publisher.wait_connected(Duration::from_secs(5)).await);
    for _ in 0..3 {
        publisher.send_signal(vec![b'x'; 1500]);
    }
    let ended = wait_metric(
        &server,
        "vestibule_sessions_ended_total{reason=\"misbehaved\"}",
        Duration::from_secs(3),
        |v| v >= 1.0,
    )
    .await;
    assert_eq!(ended, 1.0, "the session was closed");
    assert_eq!(
        wait_metric(&server, "vestibule_sessions", Duration::from_secs(2), |v| v
            == 0.0)
        .await,
        0.0
    );
    assert_eq!(metric(&server, "vestibule_media_peers").await, 0.0);
}

#[tokio::test]
async fn garbage_datagrams_are_dropped_and_media_keeps_flowing() {
    let server = Server::start(ServerSpec::default()).await;
    let publisher = Publisher::connect(
        &server.base,
        WHIP,
        &server.token("dev"),
        PublishOptions::default(),
    )
    .await
    .expect("201");
    assert!(publisher.wait_connected(Duration::from_secs(5)).await);
    let target = publisher.server_media_addr().expect("candidate");
    let noise = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let mut seed: u32 = 12345;
    for i in 0..500 {
        let len = (i * 7) % 1400;
        let datagram: Vec<u8> = (0..len)
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (seed >> 16) as u8
            })
            .collect();
        let _ = noise.send_to(&datagram, target);
    }
    // STUN-looking junk with a random username.
    let mut stun = vec![0u8, 1, 0, 8, 0x21, 0x12, 0xa4, 0x42];
    stun.extend_from_slice(&[7u8; 12]);
    stun.extend_from_slice(&[0, 6, 0, 4, b'a', b':', b'b', b'c']);
    let _ = noise.send_to(&stun, target);
    let dropped = wait_metric(
        &server,
        "vestibule_datagrams_dropped_total",
        Duration::from_secs(3),
        |v| v >= 400.0,
    )
    .await;
    assert!(dropped >= 400.0, "garbage counted as dropped: {dropped}");
    let video = "vestibule_rtp_packets_received_total{kind=\"video\"}";
    let before = metric(&server, video).await;
    let after = wait_metric(&server, video, Duration::from_secs(2), |v| {
        v > before + 10.0
    })
    .await;
    assert!(after > before + 10.0, "the real publisher is unaffected");
    assert_eq!(
        reqwest::get(server.url("/health"))
            .await
            .expect("health")
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_publisher_that_vanishes_is_cleaned_up() {
    let server =
        Server::start(ServerSpec::default().env("VESTIBULE__MEDIA__ICE_TIMEOUT_S", "2")).await;
    let mut publisher = Publisher::connect(
        &server.base,
        WHIP,
        &server.token("dev"),
        PublishOptions::default(),
    )
    .await
    .expect("201");
    assert!(publisher.wait_connected(Duration::from_secs(5)).await);
    assert_eq!(metric(&server, "vestibule_lobbies").await, 1.0);
    publisher.vanish();
    let started = Instant::now();
    let sessions = wait_metric(&server, "vestibule_sessions", Duration::from_secs(6), |v| {
        v == 0.0
    })
    .await;
    assert_eq!(sessions, 0.0, "the session ended by itself");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500),
        "not before the ICE timeout: {took:?}"
    );
    for family in [
        "vestibule_media_peers",
        "vestibule_lobbies",
        "vestibule_tracks",
        "vestibule_sessions_connected",
    ] {
        assert_eq!(
            wait_metric(&server, family, Duration::from_secs(1), |v| v == 0.0).await,
            0.0,
            "{family}"
        );
    }
    assert_eq!(
        metric(
            &server,
            "vestibule_sessions_ended_total{reason=\"peer_gone\"}"
        )
        .await,
        1.0
    );
    let r = reqwest::Client::new()
        .delete(server.url(&publisher.response.location))
        .bearer_auth(server.token("dev"))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_peer_that_never_connects_is_cleaned_up() {
    let server =
        Server::start(ServerSpec::default().env("VESTIBULE__MEDIA__CONNECT_TIMEOUT_S", "1")).await;
    let r = post(&server, "dev", offer(1, 1, true, false)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(metric(&server, "vestibule_sessions").await, 1.0);
    let sessions = wait_metric(&server, "vestibule_sessions", Duration::from_secs(4), |v| {
        v == 0.0
    })
    .await;
    assert_eq!(sessions, 0.0);
    assert_eq!(
        metric(
            &server,
            "vestibule_sessions_ended_total{reason=\"never_connected\"}"
        )
        .await,
        1.0
    );
    assert_eq!(metric(&server, "vestibule_media_peers").await, 0.0);
    assert_eq!(metric(&server, "vestibule_lobbies").await, 0.0);
}

#[tokio::test]
async fn a_channel_with_another_label_becomes_the_signal_channel_after_two_seconds() {
    let server = Server::start(ServerSpec::default()).await;
    let opts = PublishOptions {
        channel: Some("chat".into()),
        ..PublishOptions::default()
    };
    let publisher = Publisher::connect(&server.base, WHIP, &server.token("dev"), opts)
        .await
        .expect("201");
    assert!(publisher.wait_connected(Duration::from_secs(5)).await);
    let mid = publisher.mid(true).expect("video").to_string();
    publisher.send_mute(1, &mid, true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let muted = |state: serde_json::Value| {
        state["lobby"]["participants"][0]["tracks"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t["kind"] == "video" && t["mute"] == true)
    };
    assert!(
        !muted(stream_state(&server, STREAM, "dev").await),
        "not a signal channel yet"
    );
    tokio::time::sleep(Duration::from_millis(2200)).await;
    publisher.send_mute(2, &mid, true);
    let mut ok = false;
    for _ in 0..40 {
        if muted(stream_state(&server, STREAM, "dev").await) {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "after the 2 s fallback the channel carries signalling");
}

#[tokio::test]
async fn a_join_whose_offers_would_not_fit_the_signal_channel_gets_429() {
    let server = Server::start(ServerSpec::default()).await;
    assert_eq!(
        post(&server, "dev", offer(1, 1, true, false))
            .await
            .status(),
        StatusCode::CREATED
    );
    let base = offer(1, 1, true, false);
    let small = match base.lines().find(|l| l.starts_with("a=max-message-size:")) {
        Some(line) => base.replace(line, "a=max-message-size:4000"),
        None => base.replace("a=sctp-port:", "a=max-message-size:4000\r\na=sctp-port:"),
    };
    assert!(small.contains("a=max-message-size:4000"));
    let r = post(&server, "bob", small).await;
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "four m-lines cannot fit 4000 bytes"
    );
    assert!(r.text().await.unwrap_or_default().contains("lobby-full"));
    assert_eq!(
        post(&server, "carol", offer(1, 1, true, false))
            .await
            .status(),
        StatusCode::CREATED,
        "a default peer fits"
    );
}

//! Trickle ICE and ICE restart (RFC 9725 §4.3, API.md "Lobby endpoints"):
//! PATCH with `application/trickle-ice-sdpfrag` on WHIP and WHEP
//! resources, `If-Match` against the ICE session's ETag, and a restart that
//! keeps the media flowing on the same worker.

mod common;

use std::time::{Duration, Instant};

use common::{Server, ServerSpec, metric, wait_metric};
use reqwest::StatusCode;
use str0m::media::{Direction, MediaKind};
use vestibule::client::subscriber::Subscriber;
use vestibule::client::{PublishOptions, Publisher, post_offer};

const WHIP: &str = "/space/demo/stream/demo/whip";
const WHEP: &str = "/space/demo/stream/demo/whep";
const VIDEO: &str = "vestibule_rtp_packets_received_total{kind=\"video\"}";
const SDPFRAG: &str = "application/trickle-ice-sdpfrag";

async fn patch(
    server: &Server,
    location: &str,
    token: &str,
    if_match: Option<&str>,
    content_type: &str,
    body: String,
) -> (StatusCode, Option<String>, String) {
    let mut req = reqwest::Client::new()
        .patch(server.url(location))
        .bearer_auth(token)
        .header("Content-Type", content_type)
        .body(body);
    if let Some(tag) = if_match {
        req = req.header("If-Match", tag);
    }
    let resp = req.send().await.expect("patch");
    let status = resp.status();
    let etag = resp
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, etag, resp.text().await.unwrap_or_default())
}

fn ufrag_of(sdp: &str) -> String {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix("a=ice-ufrag:"))
        .expect("ice-ufrag")
        .to_string()
}

#[tokio::test]
async fn trickled_candidates_are_checked_against_the_ice_session() {
    let server = Server::start(ServerSpec::default()).await;
    let token = server.token("dev");
    // A session that never connects is enough to trickle into.
    let mut rtc = str0m::Rtc::new(Instant::now());
    let mut change = rtc.sdp_api();
    change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let (offer, _pending) = change.apply().expect("offer");
    let offer = offer.to_sdp_string();
    let ours = ufrag_of(&offer);
    let whip = post_offer(&reqwest::Client::new(), &server.url(WHIP), &token, offer)
        .await
        .expect("post");
    assert_eq!(whip.status, 201);
    let etag = whip.etag.clone().expect("ETag");
    assert_eq!(
        etag,
        format!("\"{}\"", ufrag_of(&whip.answer)),
        "ETag = ICE session"
    );
    let location = whip.location.clone();
    let candidate = "a=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host";
    let frag = format!("a=ice-ufrag:{ours}\r\n{candidate}\r\n");

    let (status, ..) = patch(&server, &location, &token, None, SDPFRAG, frag.clone()).await;
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "no If-Match is fine for trickle"
    );
    let (status, ..) = patch(
        &server,
        &location,
        &token,
        Some(&etag),
        SDPFRAG,
        frag.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "the current ETag");
    let end = format!("a=ice-ufrag:{ours}\r\na=end-of-candidates\r\n");
    let (status, ..) = patch(&server, &location, &token, None, SDPFRAG, end).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "end-of-candidates");
    let (status, ..) = patch(
        &server,
        &location,
        &token,
        Some("\"other\""),
        SDPFRAG,
        frag.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    let stranger = format!("a=ice-ufrag:nothers\r\n{candidate}\r\n");
    let (status, ..) = patch(&server, &location, &token, None, SDPFRAG, stranger).await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "another ICE session's fragment"
    );
    let broken = "a=candidate:nonsense\r\n".to_string();
    let (status, ..) = patch(&server, &location, &token, None, SDPFRAG, broken).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, ..) = patch(
        &server,
        &location,
        &token,
        None,
        "application/sdp",
        "v=0\r\n".into(),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "no SDP updates over HTTP"
    );
    let (status, ..) = patch(
        &server,
        &location,
        &server.token("bob"),
        None,
        SDPFRAG,
        frag,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "someone else's resource");
}

#[tokio::test]
async fn an_ice_restart_keeps_the_session_and_its_media() {
    // A short consent timeout: a restart whose new checks went unanswered
    // would end the session within the test.
    let server =
        Server::start(ServerSpec::default().env("VESTIBULE__MEDIA__ICE_TIMEOUT_S", "4")).await;
    let token = server.token("dev");
    let mut publisher = Publisher::connect(&server.base, WHIP, &token, PublishOptions::default())
        .await
        .expect("201");
    assert!(publisher.wait_connected(Duration::from_secs(5)).await);
    wait_metric(&server, VIDEO, Duration::from_secs(5), |v| v > 30.0).await;
    let old_etag = publisher.response.etag.clone().expect("ETag");

    let dropped_before = metric(&server, "vestibule_datagrams_dropped_total").await;
    let (status, etag) = publisher.ice_restart(&token).await.expect("restart");
    assert_eq!(status, 200);
    let etag = etag.expect("a new ETag");
    assert_ne!(etag, old_etag);
    let at_restart = metric(&server, VIDEO).await;
    let after = wait_metric(&server, VIDEO, Duration::from_secs(5), |v| {
        v > at_restart + 60.0
    })
    .await;
    assert!(
        after > at_restart + 60.0,
        "packets keep counting: {at_restart} -> {after}"
    );
    assert_eq!(metric(&server, "vestibule_ice_restarts_total").await, 1.0);
    // The client's checks with the new credentials were answered: none of
    // its datagrams was dropped as unknown or rejected.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        metric(&server, "vestibule_datagrams_dropped_total").await,
        dropped_before,
        "every datagram after the restart reached the peer"
    );
    assert_eq!(
        metric(&server, "vestibule_sessions").await,
        1.0,
        "consent kept by checks with the new credentials"
    );
    let later = metric(&server, VIDEO).await;
    assert!(later > after + 60.0, "still flowing: {after} -> {later}");
    assert_eq!(
        metric(&server, "vestibule_sessions").await,
        1.0,
        "the same session"
    );
    // The old ETag names the old ICE session now.
    let frag = "a=end-of-candidates\r\n".to_string();
    let location = publisher.response.location.clone();
    let (status, ..) = patch(
        &server,
        &location,
        &token,
        Some(&old_etag),
        SDPFRAG,
        frag.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    let (status, ..) = patch(&server, &location, &token, Some(&etag), SDPFRAG, frag).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // Server-offer WHEP: no restart (API.md).
    let subscriber = Subscriber::connect(&server.base, WHEP, &token)
        .await
        .expect("whep");
    let restart = "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n".to_string();
    let (status, ..) = patch(
        &server,
        &subscriber.location,
        &token,
        Some("\"*\""),
        SDPFRAG,
        restart.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    drop(subscriber);
    let _ = publisher.delete(&token).await;
}

#[tokio::test]
async fn a_plain_viewer_can_restart_ice_on_its_client_offer_connection() {
    let server =
        Server::start(ServerSpec::default().env("VESTIBULE__LOBBY__ALLOW_VIEWERS", "true")).await;
    let _publisher = Publisher::connect(
        &server.base,
        WHIP,
        &server.token("dev"),
        PublishOptions::default(),
    )
    .await
    .expect("201");
    let view = server
        .keys()
        .issue(
            "watcher",
            None,
            false,
            Some("demo/demo"),
            Duration::from_secs(3600),
        )
        .expect("token");
    let viewer = Subscriber::connect_client_offer(&server.base, WHEP, &view)
        .await
        .expect("201");
    let restart = "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n".to_string();
    let (status, etag, body) = patch(
        &server,
        &viewer.location,
        &view,
        Some("\"*\""),
        SDPFRAG,
        restart,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains("a=ice-ufrag:") && body.contains("a=end-of-candidates"),
        "{body}"
    );
    assert!(body.contains("127.0.0.1"), "our candidates: {body}");
    let etag = etag.expect("ETag");
    let new_ufrag = ufrag_of(&body);
    assert_eq!(etag, format!("\"{new_ufrag}\""));
    // The restarted ICE session answers checks with the new credentials
    // only (the viewer's new ufrag is "abcd").
    let media = media_addr(&body);
    let new_pwd = pwd_of(&body);
    assert!(
        stun_check(media, &format!("{new_ufrag}:abcd"), &new_pwd),
        "new credentials answered"
    );
    let old_ufrag = ufrag_of(&viewer.offer);
    let old_pwd = pwd_of(&viewer.offer);
    assert!(
        !stun_check(media, &format!("{old_ufrag}:abcd"), &old_pwd),
        "old credentials refused"
    );
    let (status, ..) = patch(
        &server,
        &viewer.location,
        &server.token("stranger"),
        None,
        SDPFRAG,
        "a=end-of-candidates\r\n".into(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another user's viewer");
}

fn pwd_of(sdp: &str) -> String {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix("a=ice-pwd:"))
        .expect("ice-pwd")
        .to_string()
}

/// The host candidate's address in an SDP or fragment.
fn media_addr(sdp: &str) -> std::net::SocketAddr {
    let line = sdp
        .lines()
        .find(|l| l.starts_with("a=candidate:") && l.contains("127.0.0.1"))
        .expect("a loopback candidate");
    let parts: Vec<&str> = line.split_whitespace().collect();
    format!("{}:{}", parts[4], parts[5]).parse().expect("addr")
}

/// Sends one STUN binding request with `username` and integrity `pwd`;
/// whether a success response came back within 500 ms.
fn stun_check(server: std::net::SocketAddr, username: &str, pwd: &str) -> bool {
    use str0m::ice::{StunMessage, TransId};
    let hmac = |key: &[u8], parts: &[&[u8]]| -> [u8; 20] {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
        let mut ctx = aws_lc_rs::hmac::Context::with_key(&key);
        for part in parts {
            ctx.update(part);
        }
        let mut out = [0u8; 20];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    };
    let request = StunMessage::binding_request(username, TransId::new(), true, 7, 1_000, false);
    let mut buf = [0u8; 1500];
    let n = request
        .to_bytes(Some(pwd.as_bytes()), &mut buf, hmac)
        .expect("encode");
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    socket.send_to(&buf[..n], server).expect("send");
    let mut reply = [0u8; 1500];
    match socket.recv_from(&mut reply) {
        Ok((n, _)) => {
            StunMessage::parse(&reply[..n]).is_ok_and(|m| m.is_successful_binding_response())
        }
        Err(_) => false,
    }
}

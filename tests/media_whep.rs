//! WHEP in server-offer mode with our own str0m clients over real UDP on
//! 127.0.0.1: offers, answers, forwarding, keyframe gate, errors.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Server, ServerSpec, metric, stream_state, wait_metric};
use reqwest::StatusCode;
use vestibule::client::subscriber::Subscriber;
use vestibule::client::{PublishOptions, Publisher};

const WHIP: &str = "/space/demo/stream/demo/whip";
const WHEP: &str = "/space/demo/stream/demo/whep";

async fn join(server: &Server, user: &str, opts: PublishOptions) -> Publisher {
    let p = Publisher::connect(&server.base, WHIP, &server.token(user), opts)
        .await
        .expect("201");
    assert!(
        p.wait_connected(Duration::from_secs(5)).await,
        "{user} connected"
    );
    p
}

fn viewer() -> PublishOptions {
    PublishOptions {
        audio: false,
        video: false,
        ..PublishOptions::default()
    }
}

/// The media sections of an SDP, as lists of lines.
fn sections(sdp: &str) -> Vec<Vec<&str>> {
    let mut out: Vec<Vec<&str>> = Vec::new();
    for line in sdp.lines() {
        if line.starts_with("m=") {
            out.push(vec![line]);
        } else if let Some(s) = out.last_mut() {
            s.push(line);
        }
    }
    out
}

#[tokio::test]
async fn a_subscriber_receives_the_publisher_starting_at_a_keyframe() {
    let server = Server::start(ServerSpec::default()).await;
    let _a = join(&server, "dev", PublishOptions::default()).await;
    let _b = join(&server, "bob", viewer()).await;
    let sub = Subscriber::connect(&server.base, WHEP, &server.token("bob"))
        .await
        .expect("whep");
    assert!(
        sub.location.starts_with("/space/demo/stream/demo/whep/"),
        "{}",
        sub.location
    );
    assert_eq!(sub.number, 1, "the POST's offer consumes number 1");

    let state = stream_state(&server, "/space/demo/stream/demo", "dev").await;
    let dev = &state["lobby"]["participants"][0];
    let participant = dev["participantId"].as_str().expect("id");
    let media = sections(&sub.offer);
    assert_eq!(
        media.len(),
        2,
        "one m-line per track of the other participant:\n{}",
        sub.offer
    );
    for section in &media {
        assert!(
            section[1].starts_with("i=1 2 dev"),
            "i= right after m=: {section:?}"
        );
        assert_eq!(section.iter().filter(|l| l.starts_with("i=")).count(), 1);
        let msid = section
            .iter()
            .find(|l| l.starts_with("a=msid:"))
            .expect("msid");
        assert!(
            msid.starts_with(&format!("a=msid:{participant} ")),
            "{msid}"
        );
        assert!(section.contains(&"a=sendonly"));
    }
    assert!(sub.offer.contains("a=msid-semantic"));

    assert!(
        sub.wait_connected(Duration::from_secs(5)).await,
        "whep connected"
    );
    let mut got = false;
    for _ in 0..60 {
        if sub.state.video_packets.load(Ordering::Relaxed) > 10
            && sub.state.audio_packets.load(Ordering::Relaxed) > 10
        {
            got = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(got, "video and audio arrive");
    let first = *sub.state.first_video_keyframe.lock().expect("lock");
    assert_eq!(
        first,
        Some(true),
        "the first forwarded video packet starts a keyframe"
    );
    let seq = sub
        .state
        .first_video_seq
        .lock()
        .expect("lock")
        .expect("seq");
    assert!(seq < 2000, "sequence numbers are rebased near zero: {seq}");
    assert!(
        metric(
            &server,
            "vestibule_rtp_packets_forwarded_total{kind=\"video\"}"
        )
        .await
            > 10.0
    );
    assert!(
        metric(&server, "vestibule_keyframe_requests_total").await >= 1.0,
        "a keyframe was requested on subscribe"
    );
}

#[tokio::test]
async fn an_empty_lobby_offers_two_inactive_sections() {
    let server = Server::start(ServerSpec::default()).await;
    let _b = join(&server, "bob", viewer()).await;
    let sub = Subscriber::connect(&server.base, WHEP, &server.token("bob"))
        .await
        .expect("whep");
    let media = sections(&sub.offer);
    assert_eq!(media.len(), 2, "{}", sub.offer);
    assert!(media[0][0].starts_with("m=audio") && media[1][0].starts_with("m=video"));
    assert!(media.iter().all(|s| s.contains(&"a=inactive")));
    assert!(sub.wait_connected(Duration::from_secs(5)).await);
}

#[tokio::test]
async fn whep_errors_are_clear() {
    let server = Server::start(ServerSpec::default()).await;
    let b = join(&server, "bob", viewer()).await;
    let c = reqwest::Client::new();
    let r = c.post(server.url(WHEP)).send().await.expect("post");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "no credentials");
    let cookie = b.response.cookie.clone().expect("cookie");
    let r = c
        .post(server.url(WHEP))
        .header("Cookie", &cookie)
        .header("X-Req-Token", "AAAAAAAAAAAAAAAAAAAAAA")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "wrong request token");
    let r = c
        .post(server.url(WHEP))
        .bearer_auth(server.token("carol"))
        .send()
        .await
        .expect("post");
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "no session in this lobby"
    );

    // Cookie flow: POST with cookie + token echoes the token.
    let token = b.response.req_token.clone().expect("token");
    let r = c
        .post(server.url(WHEP))
        .header("Cookie", &cookie)
        .header("X-Req-Token", &token)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["x-req-token"], token.as_str());
    assert_eq!(r.headers()["vestibule-offer-number"], "1");
    let location = r.headers()["location"].to_str().expect("ascii").to_string();
    let r = c
        .patch(server.url(&location))
        .bearer_auth(server.token("bob"))
        .header("Content-Type", "application/sdp")
        .body("v=0\r\ngarbage")
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "garbage answer");
    let r = c
        .patch(server.url(&location))
        .bearer_auth(server.token("bob"))
        .header("Content-Type", "application/sdp")
        .body("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n")
        .send()
        .await
        .expect("patch");
    assert_eq!(
        r.status(),
        StatusCode::CONFLICT,
        "the failed answer consumed the pending offer"
    );
    // A second POST replaces the connection and consumes the next number.
    let r = c
        .post(server.url(WHEP))
        .bearer_auth(server.token("bob"))
        .send()
        .await
        .expect("post");
    assert_eq!(
        r.headers()["vestibule-offer-number"],
        "2",
        "numbers are never reset"
    );
    let second = r.headers()["location"].to_str().expect("ascii").to_string();
    let r = c
        .patch(server.url(&location))
        .bearer_auth(server.token("bob"))
        .header("Content-Type", "application/sdp")
        .body("v=0\r\n")
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "the replaced resource");
    let r = c
        .delete(server.url(&second))
        .bearer_auth(server.token("bob"))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::OK);
    let r = c
        .delete(server.url(&second))
        .bearer_auth(server.token("bob"))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "ended resource");
    assert_eq!(
        metric(&server, "vestibule_sessions").await,
        1.0,
        "DELETE of WHEP ends only it"
    );
}

#[tokio::test]
async fn server_offer_whep_waits_for_the_signal_channel() {
    let server = Server::start(ServerSpec::default()).await;
    let opts = PublishOptions {
        channel: None,
        video: false,
        ..PublishOptions::default()
    };
    let _b = join(&server, "bob", opts).await;
    let started = std::time::Instant::now();
    let r = reqwest::Client::new()
        .post(server.url(WHEP))
        .bearer_auth(server.token("bob"))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(r.headers().contains_key("retry-after"));
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "waited for the channel"
    );
    let _ = wait_metric(
        &server,
        "vestibule_sessions",
        Duration::from_millis(10),
        |_| true,
    )
    .await;
}

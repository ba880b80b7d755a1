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

/// A receive-only client offer from a str0m peer bound to `socket`.
fn recvonly_offer(
    socket: &std::net::UdpSocket,
    pcmu_only: bool,
) -> (str0m::Rtc, str0m::change::SdpPendingOffer, String) {
    use str0m::media::{Direction, MediaKind};
    let config = str0m::RtcConfig::new().set_rtp_mode(true).clear_codecs();
    let config = if pcmu_only {
        config.enable_pcmu(true, false)
    } else {
        config.enable_opus(true, false).enable_vp8(true)
    };
    let mut rtc = config.build(std::time::Instant::now());
    let addr = socket.local_addr().expect("addr");
    rtc.add_local_candidate(str0m::Candidate::host(addr, "udp").expect("candidate"));
    let mut change = rtc.sdp_api();
    change.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    if !pcmu_only {
        change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    }
    let (offer, pending) = change.apply().expect("offer");
    (rtc, pending, offer.to_sdp_string())
}

/// Drives a str0m peer on `socket` for `time`; returns video RTP packets received.
fn drive(mut rtc: str0m::Rtc, socket: std::net::UdpSocket, time: Duration) -> usize {
    use str0m::net::{Protocol, Receive};
    use str0m::{Event, Input, Output};
    let local = socket.local_addr().expect("addr");
    let deadline = std::time::Instant::now() + time;
    let mut buf = vec![0u8; 2000];
    let mut video = 0;
    while std::time::Instant::now() < deadline {
        let timeout = loop {
            match rtc.poll_output() {
                Ok(Output::Timeout(t)) => break t,
                Ok(Output::Transmit(t)) => {
                    let _ = socket.send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(Event::RtpPacket(p))) => {
                    if p.header.payload_type == rtc_video_pt(&rtc, p.header.payload_type) {
                        video += 1;
                    }
                }
                Ok(Output::Event(_)) => {}
                Err(_) => return video,
            }
        };
        let wait = timeout
            .saturating_duration_since(std::time::Instant::now())
            .clamp(Duration::from_millis(1), Duration::from_millis(20));
        let _ = socket.set_read_timeout(Some(wait));
        let input = match socket.recv_from(&mut buf) {
            Ok((n, src)) => match Receive::new(Protocol::Udp, src, local, &buf[..n]) {
                Ok(r) => Input::Receive(std::time::Instant::now(), r),
                Err(_) => continue,
            },
            Err(_) => Input::Timeout(std::time::Instant::now()),
        };
        if rtc.handle_input(input).is_err() {
            return video;
        }
    }
    video
}

/// `pt` when it is a video payload type of `rtc`, else a value that never matches.
fn rtc_video_pt(rtc: &str0m::Rtc, pt: str0m::media::Pt) -> str0m::media::Pt {
    let video = rtc
        .codec_config()
        .params()
        .iter()
        .any(|p| p.pt() == pt && !p.spec().codec.is_audio());
    if video { pt } else { 255.into() }
}

#[tokio::test]
async fn client_offer_whep_answers_and_forwards() {
    let server = Server::start(ServerSpec::default()).await;
    let _a = join(&server, "dev", PublishOptions::default()).await;
    let _b = join(&server, "bob", viewer()).await;
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let (mut rtc, pending, offer) = recvonly_offer(&socket, false);
    let r = reqwest::Client::new()
        .post(server.url(WHEP))
        .bearer_auth(server.token("bob"))
        .header("Content-Type", "application/sdp")
        .body(offer)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(
        r.headers()["location"]
            .to_str()
            .expect("ascii")
            .starts_with("/space/demo/stream/demo/whep/")
    );
    let answer = r.text().await.expect("answer");
    assert!(
        answer.contains("i=1 2 dev"),
        "answers carry i= lines: {answer}"
    );
    let cleaned = vestibule::media::sdp_meta::prepare_offer(&answer)
        .expect("clean")
        .sdp;
    let parsed = str0m::change::SdpAnswer::from_sdp_string(&cleaned).expect("answer parses");
    rtc.sdp_api()
        .accept_answer(pending, parsed)
        .expect("accepted");
    let video = tokio::task::spawn_blocking(move || drive(rtc, socket, Duration::from_secs(2)))
        .await
        .expect("drive");
    assert!(
        video > 10,
        "video forwarded to a client-offer subscriber: {video}"
    );
}

#[tokio::test]
async fn an_offer_with_no_usable_section_gets_a_406_counter_offer() {
    let server = Server::start(ServerSpec::default()).await;
    let _a = join(&server, "dev", PublishOptions::default()).await;
    let _b = join(&server, "bob", viewer()).await;
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let (_rtc, _pending, offer) = recvonly_offer(&socket, true);
    let c = reqwest::Client::new();
    let r = c
        .post(server.url(WHEP))
        .bearer_auth(server.token("bob"))
        .header("Content-Type", "application/sdp")
        .body(offer)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::NOT_ACCEPTABLE);
    assert_eq!(r.headers()["content-type"], "application/sdp");
    let location = r.headers()["location"].to_str().expect("ascii").to_string();
    let counter = r.text().await.expect("offer");
    assert!(
        counter.contains("a=sendonly") && counter.contains("i=1 2 dev"),
        "{counter}"
    );
    // Answer the counter-offer with a fresh peer: PATCH -> 204.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let mut rtc = str0m::RtcConfig::new()
        .set_rtp_mode(true)
        .build(std::time::Instant::now());
    rtc.add_local_candidate(
        str0m::Candidate::host(socket.local_addr().expect("addr"), "udp").expect("cand"),
    );
    let cleaned = vestibule::media::sdp_meta::prepare_offer(&counter)
        .expect("clean")
        .sdp;
    let answer = rtc
        .sdp_api()
        .accept_offer(str0m::change::SdpOffer::from_sdp_string(&cleaned).expect("offer"))
        .expect("answer");
    let r = c
        .patch(server.url(&location))
        .bearer_auth(server.token("bob"))
        .header("Content-Type", "application/sdp")
        .body(answer.to_sdp_string())
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let video = tokio::task::spawn_blocking(move || drive(rtc, socket, Duration::from_secs(2)))
        .await
        .expect("drive");
    assert!(video > 10, "media flows after the counter-offer: {video}");
}

#[tokio::test]
async fn a_subscriber_pli_storm_reaches_the_publisher_throttled() {
    let server = Server::start(ServerSpec::default()).await;
    let a = join(&server, "dev", PublishOptions::default()).await;
    let _b = join(&server, "bob", viewer()).await;
    let sub = Subscriber::connect(&server.base, WHEP, &server.token("bob"))
        .await
        .expect("whep");
    assert!(sub.wait_connected(Duration::from_secs(5)).await);
    // Wait for video to flow (the subscriber learns its video mid from packets).
    for _ in 0..100 {
        if sub.state.video_packets.load(Ordering::Relaxed) > 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(metric(&server, "vestibule_subscribers").await, 1.0);
    assert!(metric(&server, "vestibule_first_frame_seconds_count").await >= 1.0);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before = a.state.keyframe_requests.load(Ordering::Relaxed);
    // 100 PLIs per second for two seconds.
    let storm = std::time::Instant::now();
    for _ in 0..200 {
        sub.request_keyframe();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Let a request deferred to the end of the window arrive too.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let window = storm.elapsed().as_secs_f64();
    let received = a.state.keyframe_requests.load(Ordering::Relaxed) - before;
    assert!(
        received >= 2,
        "subscriber PLIs reach the publisher: {received}"
    );
    let allowed = (2.0 * window).ceil() as u64 + 1;
    assert!(
        received <= allowed,
        "at most 2 per second reach the publisher: {received} in {window:.1} s"
    );
}

#[tokio::test]
async fn sixteen_publishers_keep_the_offer_under_64_kib() {
    let server = Server::start(
        ServerSpec::default()
            .env("VESTIBULE__LOBBY__MAX_SESSIONS", "17")
            .env("VESTIBULE__SECURITY__MAX_SESSIONS_PER_USER", "1"),
    )
    .await;
    let mut publishers = Vec::new();
    for n in 0..16 {
        let p = Publisher::connect(
            &server.base,
            WHIP,
            &server.token(&format!("publisher-{n:02}")),
            PublishOptions::default(),
        )
        .await
        .expect("publisher");
        publishers.push(p);
    }
    let _b = join(&server, "bob", viewer()).await;
    let sub = Subscriber::connect(&server.base, WHEP, &server.token("bob"))
        .await
        .expect("whep");
    assert_eq!(sections(&sub.offer).len(), 32, "every track offered");
    assert!(
        sub.offer.len() < 64 * 1024,
        "offer is {} bytes",
        sub.offer.len()
    );
}

#[tokio::test]
async fn a_subscriber_joining_after_65536_packets_still_decrypts() {
    let server = Server::start(ServerSpec::default()).await;
    // 100-byte frames at a high frame rate: one packet each, so the
    // publisher's extended sequence numbers pass 65 535 (SRTP ROC 1).
    let fast = PublishOptions {
        audio: false,
        fps: 20_000,
        frame_bytes: 100,
        gop: 5_000,
        ..PublishOptions::default()
    };
    let a = join(&server, "dev", fast).await;
    let sent = wait_metric(
        &server,
        "vestibule_rtp_packets_received_total{kind=\"video\"}",
        Duration::from_secs(60),
        |v| v > 66_000.0,
    )
    .await;
    assert!(
        sent > 66_000.0,
        "the publisher's sequence numbers wrapped: {sent}"
    );
    let _b = join(&server, "bob", viewer()).await;
    let sub = Subscriber::connect(&server.base, WHEP, &server.token("bob"))
        .await
        .expect("whep");
    assert!(sub.wait_connected(Duration::from_secs(5)).await);
    let mut got = 0;
    for _ in 0..150 {
        got = sub.state.video_packets.load(Ordering::Relaxed);
        if got > 50 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        got > 50,
        "packets decrypt at the subscriber (rebased ROC): {got}"
    );
    let seq = sub
        .state
        .first_video_seq
        .lock()
        .expect("lock")
        .expect("seq");
    assert!(seq < 2000, "rebased near zero: {seq}");
    drop(a);
}

//! Renegotiation over the signal channel (API.md "Signal channel" rules):
//! joins and leaves reach subscribers as server offers, answers open the
//! new m-lines, bursts coalesce, lost offers are re-sent byte-identical,
//! stale answers are ignored, mute is relayed by egress mid.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Server, ServerSpec, metric, wait_metric};
use serde_json::Value;
use vestibule::client::subscriber::Subscriber;
use vestibule::client::{PublishOptions, Publisher};
use vestibule::media::signal::{self, SignalMessage};

const WHIP: &str = "/space/demo/stream/demo/whip";
const WHEP: &str = "/space/demo/stream/demo/whep";

/// A lobby member: its WHIP publisher (with the signal channel) and its WHEP subscriber.
struct Member {
    whip: Publisher,
    whep: Subscriber,
}

async fn member(server: &Server, user: &str, publish: bool) -> Member {
    let opts = PublishOptions {
        audio: publish,
        video: publish,
        ..PublishOptions::default()
    };
    let whip = Publisher::connect(&server.base, WHIP, &server.token(user), opts)
        .await
        .expect("whip");
    assert!(
        whip.wait_connected(Duration::from_secs(5)).await,
        "{user} whip"
    );
    let whep = Subscriber::connect(&server.base, WHEP, &server.token(user))
        .await
        .expect("whep");
    assert!(
        whep.wait_connected(Duration::from_secs(5)).await,
        "{user} whep"
    );
    Member { whip, whep }
}

/// Server offers (type 1 with data.whep) received so far, as JSON.
fn offers(m: &Member) -> Vec<Value> {
    m.whip
        .received()
        .iter()
        .filter_map(|t| serde_json::from_str::<Value>(t).ok())
        .filter(|v| v["type"] == 1 && v["data"]["whep"].is_string())
        .collect()
}

async fn wait_offers(m: &Member, n: usize, limit: Duration) -> Vec<Value> {
    let deadline = Instant::now() + limit;
    loop {
        let got = offers(m);
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Answers an offer message on the member's WHEP and sends the type-2 answer.
async fn answer(m: &Member, offer: &Value) {
    let sdp = offer["data"]["sdp"]["sdp"].as_str().expect("sdp");
    let answer = m.whep.answer(sdp).await.expect("answered");
    m.whip.send_signal(signal::encode(&SignalMessage::Answer {
        id: offer["id"].as_u64().expect("id"),
        number: offer["data"]["number"].as_u64().expect("number"),
        sdp: answer,
    }));
}

fn m_lines(offer: &Value) -> Vec<String> {
    offer["data"]["sdp"]["sdp"]
        .as_str()
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("m="))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn a_join_and_a_leave_reach_subscribers_as_offers() {
    let server = Server::start(ServerSpec::default()).await;
    let a = member(&server, "dev", true).await;
    let b = member(&server, "bob", true).await;
    // B joined after A subscribed: A gets an offer with B's two tracks.
    let got = wait_offers(&a, 1, Duration::from_secs(3)).await;
    assert_eq!(got.len(), 1, "one offer for B's join");
    assert_eq!(got[0]["data"]["number"], 2, "the POST's offer was number 1");
    assert_eq!(got[0]["data"]["whep"].as_str().map(str::len), Some(22));
    let sdp = got[0]["data"]["sdp"]["sdp"].as_str().expect("sdp");
    assert!(sdp.contains("i=1 2 bob"), "B's tracks labelled: {sdp}");
    let before = a.whep.state.video_packets.load(Ordering::Relaxed);
    answer(&a, &got[0]).await;
    let deadline = Instant::now() + Duration::from_secs(3);
    while a.whep.state.video_packets.load(Ordering::Relaxed) < before + 20
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        a.whep.state.video_packets.load(Ordering::Relaxed) >= before + 20,
        "A receives B"
    );
    assert!(
        b.whep.state.video_packets.load(Ordering::Relaxed) > 0,
        "B receives A from its first offer"
    );

    // C joins and leaves: A gets an offer with C, then one without C.
    let mut c = member(&server, "carol", true).await;
    let got = wait_offers(&a, 2, Duration::from_secs(3)).await;
    assert_eq!(got.len(), 2);
    assert!(
        got[1]["data"]["sdp"]["sdp"]
            .as_str()
            .unwrap_or_default()
            .contains("carol")
    );
    answer(&a, &got[1]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        c.whip.delete(&server.token("carol")).await.expect("delete"),
        200
    );
    let got = wait_offers(&a, 3, Duration::from_secs(3)).await;
    assert_eq!(got.len(), 3, "an offer for C's leave");
    let sdp = got[2]["data"]["sdp"]["sdp"].as_str().unwrap_or_default();
    assert!(
        !sdp.contains("i=1 2 carol"),
        "C's m-lines are no longer labelled: {sdp}"
    );
    let stopped = m_lines(&got[2])
        .iter()
        .filter(|l| l.split_whitespace().nth(1) == Some("0"))
        .count();
    assert_eq!(stopped, 2, "C's two m-lines are stopped");
    assert_eq!(got[2]["data"]["number"], 4, "numbers count up per session");
    assert!(metric(&server, "vestibule_renegotiations_total").await >= 4.0);
}

#[tokio::test]
async fn three_quick_joins_make_at_most_two_offers() {
    let server = Server::start(ServerSpec::default()).await;
    let a = member(&server, "dev", false).await;
    let base = server.base.clone();
    let joins = ["p1", "p2", "p3"].map(|u| {
        let (base, token) = (base.clone(), server.token(u));
        tokio::spawn(async move {
            Publisher::connect(&base, WHIP, &token, PublishOptions::default()).await
        })
    });
    let mut publishers = Vec::new();
    for j in joins {
        publishers.push(j.await.expect("join").expect("201"));
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let got = offers(&a);
    assert!(
        (1..=2).contains(&got.len()),
        "coalesced: {} offers",
        got.len()
    );
    // Answering the outstanding offer sends whatever it did not carry.
    answer(&a, &got[0]).await;
    let got = wait_offers(&a, 2, Duration::from_millis(800)).await;
    let last = got.last().expect("an offer");
    if got.len() == 2 {
        answer(&a, last).await;
    }
    let labels = last["data"]["sdp"]["sdp"].as_str().unwrap_or_default();
    for user in ["p1", "p2", "p3"] {
        assert!(
            labels.contains(&format!("i=1 2 {user}")),
            "{user} in the last offer"
        );
    }
}

#[tokio::test]
async fn an_unanswered_offer_is_resent_byte_identical_and_stale_answers_are_ignored() {
    let server = Server::start(ServerSpec::default()).await;
    let a = member(&server, "dev", false).await;
    let _b = Publisher::connect(
        &server.base,
        WHIP,
        &server.token("bob"),
        PublishOptions::default(),
    )
    .await
    .expect("bob");
    let first = wait_offers(&a, 1, Duration::from_secs(3)).await;
    assert_eq!(first.len(), 1);
    // A stale answer (wrong number) is ignored.
    a.whip.send_signal(signal::encode(&SignalMessage::Answer {
        id: 99,
        number: 77,
        sdp: "v=0\r\n".into(),
    }));
    let stale = wait_metric(
        &server,
        "vestibule_signal_ignored_total{reason=\"stale_answer\"}",
        Duration::from_secs(2),
        |v| v >= 1.0,
    )
    .await;
    assert_eq!(stale, 1.0);
    // Not answered: re-sent after 5 s, the same bytes.
    let texts = |m: &Member| -> Vec<String> {
        m.whip
            .received()
            .into_iter()
            .filter(|t| t.contains("\"whep\""))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(7);
    while texts(&a).len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all = texts(&a);
    assert_eq!(all.len(), 2, "re-sent once after 5 s");
    assert_eq!(all[0], all[1], "byte-identical");
    assert_eq!(metric(&server, "vestibule_offers_resent_total").await, 1.0);
    // The re-sent offer still works.
    answer(&a, &first[0]).await;
    let deadline = Instant::now() + Duration::from_secs(3);
    while a.whep.state.video_packets.load(Ordering::Relaxed) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(a.whep.state.video_packets.load(Ordering::Relaxed) > 0);
}

#[tokio::test]
async fn mute_is_relayed_by_the_subscribers_egress_mid() {
    let server = Server::start(ServerSpec::default()).await;
    let a = member(&server, "dev", true).await;
    let b = member(&server, "bob", false).await;
    // B's first offer (POST) carried A's tracks; find B's egress mid of A's video.
    let offer = &b.whep.offer;
    let mut video_mid = None;
    let mut in_video = false;
    for line in offer.lines() {
        if line.starts_with("m=") {
            in_video = line.starts_with("m=video");
        }
        if in_video && let Some(mid) = line.strip_prefix("a=mid:") {
            video_mid = Some(mid.to_string());
        }
    }
    let video_mid = video_mid.expect("video mid");
    let a_mid = a.whip.mid(true).expect("a video").to_string();
    a.whip.send_mute(1, &a_mid, true);
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut relayed = None;
    while relayed.is_none() && Instant::now() < deadline {
        relayed = b
            .whip
            .received()
            .iter()
            .filter_map(|t| serde_json::from_str::<Value>(t).ok())
            .find(|v| v["type"] == 3);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let relayed = relayed.expect("a type-3 message reached B");
    assert_eq!(
        relayed["data"]["mid"],
        video_mid.as_str(),
        "by B's egress mid"
    );
    assert_eq!(relayed["data"]["mute"], true);
}

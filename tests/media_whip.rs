//! WHIP into a lobby with our own str0m client over real UDP on 127.0.0.1.

mod common;

use std::time::Duration;

use common::{Server, ServerSpec};
use vestibule::client::{PublishOptions, Publisher};

const WHIP: &str = "/space/demo/stream/demo/whip";

async fn metric(server: &Server, name: &str) -> f64 {
    let text = reqwest::get(server.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn a_publisher_connects_and_its_packets_are_counted() {
    let server = Server::start(ServerSpec::default()).await;
    let token = server.token("dev");
    let mut publisher = Publisher::connect(&server.base, WHIP, &token, PublishOptions::default())
        .await
        .expect("201");
    let r = &publisher.response;
    assert_eq!(r.status, 201);
    assert!(
        r.location.starts_with("/space/demo/stream/demo/whip/"),
        "{}",
        r.location
    );
    assert!(r.etag.is_some());
    assert_eq!(r.req_token.as_deref().map(str::len), Some(22));
    assert!(
        r.set_cookie
            .as_deref()
            .is_some_and(|c| c.contains("HttpOnly"))
    );
    assert!(r.answer.contains("a=ice-lite"));
    assert!(
        publisher.wait_connected(Duration::from_secs(5)).await,
        "connected + channel open"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    let video = metric(
        &server,
        "vestibule_rtp_packets_received_total{kind=\"video\"}",
    )
    .await;
    let audio = metric(
        &server,
        "vestibule_rtp_packets_received_total{kind=\"audio\"}",
    )
    .await;
    assert!(video > 10.0, "video packets counted: {video}");
    assert!(audio > 10.0, "audio packets counted: {audio}");
    assert_eq!(publisher.delete(&token).await.expect("delete"), 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(metric(&server, "vestibule_sessions ").await, 0.0);
    assert_eq!(metric(&server, "vestibule_media_peers").await, 0.0);
}

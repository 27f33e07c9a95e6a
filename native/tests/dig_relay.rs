//! The live test against the production dig-relay tracker. It needs the internet, so it is
//! ignored; `tests/interop.rs::test_seed_to_local_tracker` is its twin on a local tracker.

use std::time::Duration;

use bytes::Bytes;
use webtorrent::{Event, WebTorrent, WebTorrentOptions};

const DIG_RELAY: &str =
    "http://dig-relay-prod.eba-2cmanxbe.us-east-1.elasticbeanstalk.com:8000/announce";

#[tokio::test]
#[ignore = "contacts the production tracker over the internet"]
async fn test_seed_to_dig_relay_tracker() {
    let client = WebTorrent::new(WebTorrentOptions::default()).await.unwrap();
    let t = client
        .seed(
            "test.txt".to_string(),
            Bytes::from("Hello, World! This is a test file."),
            Some(vec![DIG_RELAY.to_string()]),
        )
        .await
        .unwrap();
    let mut ev = t.subscribe();
    let reply = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match ev.recv().await {
                Ok(Event::TrackerReply { seeders, .. }) => return Ok(seeders),
                Ok(Event::TrackerError { error, .. }) => return Err(error),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await
    .expect("the tracker answered within a minute");
    assert!(reply.expect("announce succeeded").unwrap_or(0) >= 1);
    client.destroy().await.unwrap();
}

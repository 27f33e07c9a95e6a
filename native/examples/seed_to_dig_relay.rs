//! Seeds a test file to the dig-relay tracker, re-announces, and prints what the tracker said.
//!
//! ```sh
//! cargo run --example seed_to_dig_relay            # the production tracker (needs internet)
//! TRACKER=http://127.0.0.1:8000/announce cargo run --example seed_to_dig_relay
//! ```

use std::time::Duration;

use bytes::Bytes;
use webtorrent::{Event, TorrentCreator, WebTorrent, WebTorrentOptions};

const DIG_RELAY: &str =
    "http://dig-relay-prod.eba-2cmanxbe.us-east-1.elasticbeanstalk.com:8000/announce";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let announce = std::env::var("TRACKER").unwrap_or_else(|_| DIG_RELAY.to_string());
    let stats_url = announce.replace("/announce", "/stats");
    let data = Bytes::from(format!(
        "Hello from webtorrent-rs! This is a test file created at {:?}.\n",
        std::time::SystemTime::now()
    ));
    let (torrent_file, info_hash) = TorrentCreator::new()
        .with_announce(vec![announce.clone()])
        .create_from_data("test_file.txt".to_string(), data.clone())
        .await?;
    println!("Torrent created!");
    println!("Info hash: {}", hex::encode(info_hash));
    println!("Torrent file size: {} bytes", torrent_file.len());

    println!("Adding torrent to client...");
    let client = WebTorrent::new(WebTorrentOptions::default()).await?;
    let torrent = client
        .seed("test_file.txt".to_string(), data, Some(vec![announce]))
        .await?;
    println!("Torrent added: {}", torrent.name());
    println!("Announcing to tracker...");
    let mut events = torrent.subscribe();
    let mut replies = 0;
    let deadline = tokio::time::sleep(Duration::from_secs(120));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(Event::TrackerReply { interval, seeders, leechers, .. }) => {
                    println!("✓ Successfully announced to tracker!");
                    println!("  Interval: {} seconds", interval.as_secs());
                    println!("  Seeders: {}", seeders.map_or("?".into(), |s| s.to_string()));
                    println!("  Leechers: {}", leechers.map_or("?".into(), |s| s.to_string()));
                    replies += 1;
                    if replies == 1 {
                        println!();
                        println!("Check the stats page: {stats_url}");
                        println!();
                        println!("Seeding... Press Ctrl+C to stop");
                    }
                }
                Ok(Event::TrackerError { url, error }) => eprintln!("✗ announce to {url} failed: {error}"),
                Ok(_) => {}
                Err(_) => break,
            },
            _ = tokio::signal::ctrl_c() => break,
            _ = &mut deadline, if replies == 0 => {
                eprintln!("✗ no answer from the tracker within 2 minutes");
                break;
            }
        }
    }
    client.destroy().await?;
    Ok(())
}

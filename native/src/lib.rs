//! Native WebTorrent client: tokio drivers for the `webtorrent-core` state machines.
//!
//! Peers over TCP (BEP 3, 6, 9, 10, 11), HTTP and UDP trackers (BEP 3, 12, 15, 23, 48), the
//! DHT (BEP 5, opt-in with [`WebTorrentOptions::dht`]), storage in memory or in files.
//!
//! # Cargo features
//!
//! Both are on by default; with `default-features = false` the crate is a TCP-only client
//! (TCP peers, HTTP(S) and UDP trackers, memory or file storage) that compiles neither
//! webrtc-rs, nor a WebSocket client, nor an HTTP server.
//!
//! | Feature  | Adds | Extra dependencies |
//! |----------|------|--------------------|
//! | `webrtc` | WebRTC peers found through WebSocket trackers (`ws://`, `wss://`): the `rtc` module, [`WebTorrentOptions::webrtc`] on by default, `WebTorrentOptions::signal`, `WebTorrentOptions::rtc` and `WebTorrentOptions::rtc_config` | webrtc, rtc, tokio-tungstenite, async-trait, socket2 |
//! | `server` | The tracker and page server of `webtorrent serve` (the `server` module) and the bridge between WebRTC and TCP swarms (the `bridge` module); implies `webrtc` | hyper (server side), hyper-util, http-body-util, serde, serde_json |
//!
//! Without `webrtc`, a torrent's `ws://` and `wss://` trackers are skipped (its other
//! trackers are used as usual), [`WebTorrentOptions::webrtc`] defaults to `false`, and
//! [`WebTorrent::new`] refuses options that set it with [`Error::Options`].
//!
//! ```no_run
//! use webtorrent::{TorrentCreator, WebTorrent, WebTorrentOptions};
//! use bytes::Bytes;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let announce_url = "http://127.0.0.1:8000/announce".to_string();
//! let client = WebTorrent::new(WebTorrentOptions::default()).await?;
//! let torrent = client
//!     .seed("test.txt".to_string(), Bytes::from("Hello"), Some(vec![announce_url.clone()]))
//!     .await?;
//! println!("{} {}", torrent.name(), hex::encode(torrent.info_hash()));
//! let (torrent_file, _info_hash) = TorrentCreator::new()
//!     .with_announce(vec![announce_url])
//!     .create_from_data("my_file.txt".to_string(), Bytes::from("data"))
//!     .await?;
//! let torrent = client.add(torrent_file).await?;
//! client.destroy().await?;
//! # Ok(()) }
//! ```

pub mod accept;
#[cfg(feature = "server")]
pub mod bridge;
mod client;
mod conn;
pub mod creator;
mod crypt;
pub mod dht;
mod disk;
mod error;
mod limit;
mod options;
pub mod portmap;
pub mod resume;
#[cfg(feature = "webrtc")]
pub mod rtc;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "webrtc")]
mod signal;
pub mod storage;
pub mod stream;
mod task;
#[cfg(all(test, not(feature = "webrtc")))]
mod tcp_only_tests;
mod torrent;
pub mod tracker;
mod udp;
mod utp;
mod webseed;

pub use client::{AddOptions, Admit, TorrentSource, WebTorrent};
pub use creator::TorrentCreator;
pub use crypt::Encryption;
pub use dht::DhtOptions;
pub use error::{Error, Result};
pub use options::{default_state_dir, human_bytes, WebTorrentOptions, DEFAULT_MEMORY_LIMIT};
pub use portmap::{PortMapping, PortMappingOptions};
pub use resume::{forget_torrent, saved_torrents, SavedTorrent};
pub use stream::FileReader;
pub use torrent::{Event, Torrent, TorrentFile};
pub use webtorrent_core as core;
pub use webtorrent_core::{InfoHash, PeerId};

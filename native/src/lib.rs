//! Native WebTorrent client: tokio drivers for the `webtorrent-core` state machines.
//!
//! Peers over TCP (BEP 3, 6, 9, 10, 11), HTTP and UDP trackers (BEP 3, 12, 15, 23, 48),
//! storage in memory or in files.
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

pub mod bridge;
mod client;
mod conn;
pub mod creator;
mod disk;
mod error;
mod limit;
mod options;
pub mod rtc;
pub mod server;
mod signal;
pub mod storage;
mod task;
mod torrent;
pub mod tracker;

pub use client::{AddOptions, Admit, TorrentSource, WebTorrent};
pub use creator::TorrentCreator;
pub use error::{Error, Result};
pub use options::WebTorrentOptions;
pub use torrent::{Event, Torrent, TorrentFile};
pub use webtorrent_core as core;
pub use webtorrent_core::{InfoHash, PeerId};

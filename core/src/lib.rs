//! Sans-IO core of webtorrent-rs: the BitTorrent and WebTorrent formats.
//!
//! Nothing here opens a socket, reads a clock or spawns a task; drivers feed bytes in and take
//! bytes out. The crate builds for native targets and for `wasm32-unknown-unknown`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod announce;
pub mod bencode;
pub mod creator;
pub mod ext;
pub mod fast;
pub mod id;
pub mod magnet;
pub mod metainfo;
pub mod peer;
pub mod percent;
pub mod picker;
pub mod piece;
pub mod rng;
pub mod session;
pub mod signal;
pub mod time;
pub mod torrent;
pub mod tracker;
pub mod wire;

pub use id::{Id20, InfoHash, PeerId, PeerKey};
pub use time::Time;

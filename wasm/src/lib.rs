//! WebTorrent in the browser: drivers for [`webtorrent_core`] built on wasm-bindgen.
//!
//! The JavaScript API follows the webtorrent package: `new WebTorrent(opts)`, `seed()`,
//! `add()`, torrents with `infoHash`, `magnetURI`, `files`, `progress`, events and
//! `destroy()`. Peers are WebRTC data channels signalled through WebSocket trackers; HTTP
//! trackers are announced to with `fetch`.

mod client;
mod hash;
mod http;
mod keep;
mod persist;
mod read_worker;
mod rtc;
mod store;
mod torrent;
mod util;
mod ws;

pub use client::WebTorrent;
pub use torrent::{Torrent, TorrentFile};

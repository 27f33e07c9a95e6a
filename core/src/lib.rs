//! Sans-IO core of webtorrent-rs: the BitTorrent and WebTorrent protocols as state machines.
//!
//! Nothing here opens a socket, reads a clock or spawns a task: drivers feed bytes, time and
//! storage results in and carry out what comes out. The crate builds for native targets and
//! for `wasm32-unknown-unknown`; the tokio driver lives in the `webtorrent` crate, the
//! browser driver in `webtorrent-wasm`.
//!
//! # The map
//!
//! From the bottom up:
//!
//! | Layer | Modules |
//! |---|---|
//! | Formats | [`bencode`], [`metainfo`], [`magnet`], [`creator`], [`percent`], [`id`] |
//! | Pieces | [`piece`] (layout, blocks, bitfields, validated [`piece::PieceIndex`]), [`picker`] (rarest first, endgame, file selection, priority ranges), [`memory`] (a torrent's bytes in memory, allocated as pieces arrive) |
//! | Peer wire | [`wire`] (messages, decoder), [`ext`] (BEP 10 extensions: `ut_metadata`, `ut_pex`), [`fast`] (BEP 6), [`peer`] (one connection: handshake, choke/interest, requests, timeouts), [`webseed`] (a BEP 19 web seed as a peer: requests become HTTP Range fetches) |
//! | Trackers | [`tracker`] (HTTP, UDP and WebSocket message formats, UDP client machine), [`announce`] (tiers, intervals, events), [`signal`] (one WebSocket tracker: announces, WebRTC offers and answers) |
//! | Swarm | [`torrent`] (one torrent's peers, pieces, choker, PEX, metadata exchange) |
//! | Session | [`session`] (a torrent with its trackers and signaling behind one input and one output type) |
//! | DHT | [`dht`] (one mainline DHT node, BEP 5/32/42/43: KRPC, routing table, lookups, tokens, peer store; shared by every torrent of a client, fed datagrams and time like the rest; its peers go to a session as [`session::Input::AddPeers`], and a session's [`session::Event::DhtNode`] (a peer's BEP 5 `PORT`) goes to [`dht::Dht::add_node`]) |
//! | Protocol encryption | [`mse`] (MSE/PE: the Diffie-Hellman handshake that hides a TCP connection's BitTorrent handshake, then RC4 or plaintext; a sans-IO machine fed the connection's first bytes, and the RC4 ciphers the driver applies to the rest) |
//!
//! [`time`] is the clock type every machine takes; [`rng`] the seeded randomness.
//!
//! # The driver contract
//!
//! A driver keeps one [`session::TorrentSession`] per torrent and:
//!
//! 1. feeds everything that happens as a [`session::Input`] with
//!    [`handle_input`](session::TorrentSession::handle_input): connections opened and
//!    closed, bytes received, pieces read, pieces hashed and stored, tracker replies,
//!    WebSocket tracker messages, and [`session::Input::Timeout`] once
//!    [`poll_timeout`](session::TorrentSession::poll_timeout) is reached;
//! 2. carries out every [`session::Output`] from
//!    [`poll_output`](session::TorrentSession::poll_output) until it returns `None`;
//! 3. hands each peer's bytes from
//!    [`poll_transmit_to`](session::TorrentSession::poll_transmit_to) to its connection
//!    while the connection has room.
//!
//! Web seeds need no connection: the session runs them and asks for HTTP GETs with
//! [`session::Output::Fetch`], answered with [`session::Input::Fetched`].
//!
//! Peer keys ([`PeerKey`]) are chosen by the driver and unique within the client, below
//! [`session::WEBSEED_KEY_BASE`] (the session's web seeds use keys above it). Calls
//! never block and never fail because of what a peer sent: bad peers are dropped and their
//! pieces fetched from others.
//!
//! ```
//! use std::time::Duration;
//! use webtorrent_core::creator::TorrentCreator;
//! use webtorrent_core::metainfo::Metainfo;
//! use webtorrent_core::piece::{sha1, Bitfield};
//! use webtorrent_core::session::{CheckOutcome, Input, Output, SessionSettings, Start, TorrentSession};
//! use webtorrent_core::{Id20, Time};
//!
//! let data = vec![7u8; 100_000];
//! let (file, _info_hash) = TorrentCreator::new()
//!     .create_from_data("hello.bin", &data)
//!     .expect("a torrent");
//! let meta = std::sync::Arc::new(Metainfo::from_bytes(&file).expect("valid"));
//! let start = Start::Metainfo {
//!     have: Bitfield::full(meta.info.num_pieces()),
//!     meta: meta.clone(),
//!     storage_ready: true,
//! };
//! let settings = SessionSettings::new(Id20([1; 20]));
//! let mut session = TorrentSession::new(settings, start, Vec::new(), 42, Time::ZERO)
//!     .expect("pieces match");
//!
//! // One turn of a driver loop (a real one waits for I/O or the timeout in between).
//! let mut now = Time::ZERO;
//! for _ in 0..3 {
//!     while let Some(out) = session.poll_output() {
//!         match out {
//!             Output::ReadPiece { piece, offset, length, .. } => {
//!                 let s = offset as usize;
//!                 let bytes = data[s..s + length as usize].to_vec().into();
//!                 session.handle_input(now, Input::PieceRead { piece, data: Some(bytes) });
//!             }
//!             Output::VerifyPiece { piece, data, expected, .. } => {
//!                 let outcome = if sha1(&data) == expected {
//!                     CheckOutcome::Stored // after writing it at `offset`
//!                 } else {
//!                     CheckOutcome::HashMismatch
//!                 };
//!                 session.handle_input(now, Input::PieceChecked { piece, outcome, data });
//!             }
//!             // Connect, Disconnect, OpenStorage, Announce, Rtc, Event, Stopped: the
//!             // driver's sockets, storage, trackers and user interface.
//!             _ => {}
//!         }
//!     }
//!     for key in session.pending_transmits() {
//!         while let Some(_bytes) = session.poll_transmit_to(key) { /* write to the peer */ }
//!     }
//!     now = session.poll_timeout().max(now + Duration::from_millis(1));
//!     session.handle_input(now, Input::Timeout);
//! }
//! assert!(session.is_complete());
//! ```
//!
//! # Timeouts
//!
//! Each timeout has one owner, the machine that acts when it expires; drivers bound their own
//! I/O with the owner's value instead of a constant of their own.
//!
//! | What | Value | Owner |
//! |---|---|---|
//! | TCP dial | 10 s | [`torrent::TorrentConfig::connect_timeout`] (the native dial is cut at the same value) |
//! | BitTorrent handshake | 10 s | [`peer::HANDSHAKE_TIMEOUT`] (also the native listener's wait for an incoming handshake) |
//! | Silence from a peer / our keep-alive | 180 s / 60 s | [`peer::SessionConfig`] `idle_timeout` / `keepalive_interval` |
//! | A block request | 30 s | [`peer::SessionConfig`] `request_timeout`, then the block goes to another peer |
//! | A metadata request / retrying that peer | 10 s / 60 s | [`torrent::METADATA_REQUEST_TIMEOUT`] / [`torrent::METADATA_RETRY_AFTER`] |
//! | PEX messages from one peer | one per 45 s | [`torrent::PEX_MIN_INTERVAL`] |
//! | An announce (HTTP, UDP or WebSocket) / `stopped` | 30 s / 5 s | [`announce::AnnounceConfig`] `request_timeout` / `stop_timeout`, handed to drivers as [`announce::AnnounceJob::timeout`] |
//! | UDP tracker retransmission | 4 s doubling, 2 retries: 28 s, inside the 30 s above | [`tracker::udp_client::UdpClientConfig`] |
//! | WebSocket tracker: open the socket | 15 s | [`signal::Config::connect_timeout`] |
//! | WebSocket tracker: our offer's answer / our answer / a scrape | 50 s / 20 s / 15 s | [`signal::Config`] |
//! | ICE gathering | 5 s | [`signal::ICE_GATHER_TIMEOUT`] |
//! | One HTTP request of a web seed fetch | 60 s | [`webseed::FETCH_TIMEOUT`]; a failed web seed is retried after 15 s doubling to 10 min ([`webseed::retry_at`]) |
//! | A WebRTC data channel opening | 30 s | [`signal::CHANNEL_OPEN_TIMEOUT`]; the session's backstop is their sum ([`session::SessionSettings::rtc_connect_timeout`]) |

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod announce;
pub mod bencode;
pub mod creator;
pub mod dht;
pub mod ext;
pub mod fast;
pub mod id;
pub mod magnet;
pub mod memory;
pub mod metainfo;
pub mod mse;
pub mod peer;
pub mod percent;
pub mod picker;
pub mod piece;
pub mod portmap;
pub mod resume;
pub mod rng;
pub mod session;
pub mod signal;
pub mod time;
pub mod torrent;
pub mod tracker;
pub mod utp;
pub mod webseed;
pub mod wire;

pub use id::{Id20, InfoHash, PeerId, PeerKey};
pub use time::Time;

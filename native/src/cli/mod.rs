//! Pieces of the `webtorrent` command kept out of `main.rs`.

pub mod net;

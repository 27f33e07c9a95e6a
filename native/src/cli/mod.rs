//! Pieces of the `webtorrent` command kept out of `main.rs`.

pub mod args;
pub mod net;
pub mod progress;
pub mod signals;

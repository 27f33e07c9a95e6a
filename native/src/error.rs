//! The error type of the native client.

use webtorrent_core::creator::CreateError;
use webtorrent_core::magnet::MagnetError;
use webtorrent_core::metainfo::MetainfoError;

/// Errors from the native client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The .torrent file is invalid.
    #[error("invalid torrent: {0}")]
    Metainfo(#[from] MetainfoError),
    /// The magnet link is invalid.
    #[error("invalid magnet link: {0}")]
    Magnet(#[from] MagnetError),
    /// Creating a torrent failed.
    #[error("cannot create torrent: {0}")]
    Create(#[from] CreateError),
    /// A file or socket operation failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The input is neither a torrent file, a magnet link, an info hash nor a readable path.
    #[error("cannot use {0:?} as a torrent: not a .torrent file, magnet link or info hash")]
    UnknownSource(String),
    /// The torrent is already in this client.
    #[error("torrent {0} is already added")]
    Duplicate(String),
    /// The client or torrent has been destroyed.
    #[error("the client or torrent has been shut down")]
    Shutdown,
    /// Data on disk or in memory does not fit the torrent.
    #[error("storage: {0}")]
    Storage(String),
    /// The data given to seed a torrent from does not fit it: missing, a file for a
    /// multi-file torrent, or pieces that do not verify.
    #[error("{0}")]
    Data(String),
    /// A tracker request failed.
    #[error("tracker: {0}")]
    Tracker(String),
    /// Invalid options.
    #[error("invalid option: {0}")]
    Options(String),
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

//! Reading a file while it downloads: [`FileReader`] is `AsyncRead + AsyncSeek`; each read
//! waits for the piece it needs and moves the reader's priority window (its position and a
//! little ahead) so the swarm fetches those pieces first. Many readers may be open at once,
//! on one file or several; each has its own window.

use std::future::Future;
use std::io::{self, SeekFrom};
use std::ops::Range;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncSeek, ReadBuf};
use tokio::sync::oneshot;
use webtorrent_core::session::ReaderWindow;

use crate::task::TaskMsg;
use crate::torrent::Torrent;
use crate::{Error, Result};

pub use webtorrent_core::session::{READAHEAD_BYTES, READAHEAD_PIECES};
/// Largest read from storage at once.
const MAX_CHUNK: u64 = 1 << 20;

static NEXT_READER: AtomicU64 = AtomicU64::new(1);

type Fetch = Pin<Box<dyn Future<Output = io::Result<Bytes>> + Send>>;

/// One file of a torrent, readable and seekable while it downloads. Made by
/// [`Torrent::file_reader`]. Reads wait for the pieces they need; dropping the reader clears
/// its priority window.
pub struct FileReader {
    torrent: Torrent,
    id: u64,
    file: usize,
    /// The file's bytes within the torrent's content.
    span: Range<u64>,
    piece_length: u64,
    /// Position within the file.
    pos: u64,
    /// Bytes read ahead, starting at `pos`.
    buf: Bytes,
    fetch: Option<Fetch>,
    /// Moves the window sent to the torrent.
    window: ReaderWindow,
}

impl std::fmt::Debug for FileReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileReader")
            .field("file", &self.file)
            .field("span", &self.span)
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

impl FileReader {
    pub(crate) fn new(torrent: Torrent, file: usize) -> Result<FileReader> {
        let meta = torrent.metainfo().ok_or_else(|| {
            Error::Options(
                "the torrent's metadata is not known yet: wait for it with wait_metadata()".into(),
            )
        })?;
        let files: Vec<_> = meta.info.files.iter().filter(|f| !f.padding).collect();
        let Some(f) = files.get(file) else {
            return Err(Error::Options(format!(
                "no file {file}: the torrent has {} file(s), numbered from 0",
                files.len()
            )));
        };
        Ok(FileReader {
            id: NEXT_READER.fetch_add(1, Ordering::Relaxed),
            file,
            span: f.offset..f.offset + f.length,
            piece_length: u64::from(meta.info.layout.piece_length()),
            torrent,
            pos: 0,
            buf: Bytes::new(),
            fetch: None,
            window: ReaderWindow::default(),
        })
    }

    /// The file's length in bytes.
    pub fn len(&self) -> u64 {
        self.span.end - self.span.start
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The current position within the file.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The file's index in [`Torrent::files`].
    pub fn file_index(&self) -> usize {
        self.file
    }

    /// Starts fetching the bytes at the current position (the window moves first when the
    /// position entered another piece).
    fn start_fetch(&mut self) -> Fetch {
        let abs = self.span.start + self.pos;
        let piece = abs / self.piece_length;
        let window = self.window.update(abs, self.span.end, self.piece_length);
        let end = self
            .span
            .end
            .min((piece + 1) * self.piece_length)
            .min(abs + MAX_CHUNK);
        let torrent = self.torrent.clone();
        let id = self.id;
        Box::pin(async move {
            let shut = || io::Error::new(io::ErrorKind::BrokenPipe, "the torrent was removed");
            if let Some(window) = window {
                torrent
                    .inner
                    .tx
                    .send(TaskMsg::Stream {
                        id,
                        window: Some(window),
                    })
                    .await
                    .map_err(|_| shut())?;
            }
            let index = u32::try_from(piece)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset out of range"))?;
            let (reply, rx) = oneshot::channel();
            torrent
                .inner
                .tx
                .send(TaskMsg::WaitPiece {
                    piece: index,
                    reply,
                })
                .await
                .map_err(|_| shut())?;
            rx.await.map_err(|_| shut())?;
            torrent
                .read(abs, (end - abs) as usize)
                .await
                .map_err(|e| io::Error::other(e.to_string()))
        })
    }
}

impl FileReader {
    /// The next bytes at the position, at most `max` (fewer at a piece boundary), without
    /// copying; empty at the end of the file. Waits for the piece like a read does.
    pub fn poll_chunk(&mut self, cx: &mut Context<'_>, max: usize) -> Poll<io::Result<Bytes>> {
        loop {
            if !self.buf.is_empty() {
                let n = self.buf.len().min(max);
                let out = self.buf.split_to(n);
                self.pos += n as u64;
                return Poll::Ready(Ok(out));
            }
            if self.pos >= self.len() || max == 0 {
                return Poll::Ready(Ok(Bytes::new()));
            }
            if self.fetch.is_none() {
                self.fetch = Some(self.start_fetch());
            }
            let Some(fetch) = self.fetch.as_mut() else {
                continue;
            };
            match fetch.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(res) => {
                    self.fetch = None;
                    let bytes = res?;
                    if bytes.is_empty() {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "storage returned no bytes",
                        )));
                    }
                    self.buf = bytes;
                }
            }
        }
    }
}

impl AsyncRead for FileReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let max = out.remaining();
        let chunk = std::task::ready!(self.poll_chunk(cx, max))?;
        out.put_slice(&chunk);
        Poll::Ready(Ok(()))
    }
}

impl AsyncSeek for FileReader {
    fn start_seek(mut self: Pin<&mut Self>, to: SeekFrom) -> io::Result<()> {
        let len = self.len();
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let Some(target) = target else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the file",
            ));
        };
        if target != self.pos {
            self.pos = target;
            self.buf = Bytes::new();
            self.fetch = None;
        }
        Ok(())
    }

    fn poll_complete(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Poll::Ready(Ok(self.pos))
    }
}

impl Drop for FileReader {
    fn drop(&mut self) {
        let msg = TaskMsg::Stream {
            id: self.id,
            window: None,
        };
        if let Err(tokio::sync::mpsc::error::TrySendError::Full(msg)) =
            self.torrent.inner.tx.try_send(msg)
        {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let tx = self.torrent.inner.tx.clone();
                rt.spawn(async move {
                    let _ = tx.send(msg).await;
                });
            }
        }
    }
}

//! A torrent's disk thread: piece reads, hashing and writes run there one at a time, in order.
//!
//! One thread instead of tokio's blocking pool: no hand-off to a fresh pool thread per piece,
//! no two writes to the same file contending for its lock, and hashing never takes more than
//! one core away from the connections.

use std::sync::mpsc;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Handle on the thread; it exits once the handle is dropped and its queue is empty.
#[derive(Debug)]
pub(crate) struct DiskThread {
    tx: mpsc::Sender<Job>,
}

impl DiskThread {
    /// Starts the thread.
    pub fn spawn() -> std::io::Result<DiskThread> {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("webtorrent-disk".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job();
                }
            })?;
        Ok(DiskThread { tx })
    }

    /// Queues `job`; gives it back if the thread is gone.
    pub fn run<F: FnOnce() + Send + 'static>(&self, job: F) -> Result<(), Job> {
        self.tx.send(Box::new(job)).map_err(|e| e.0)
    }
}

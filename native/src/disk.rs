//! The client's disk threads: piece reads, hashing, writes and storage setup of every torrent
//! run there, in queue order.
//!
//! A small pool shared by all torrents instead of threads per torrent (an idle torrent costs
//! no thread) and instead of tokio's blocking pool (no hand-off to a fresh pool thread per
//! piece; a few pieces hashed at once, so the connections keep the other cores; one thread can
//! hash while another waits for a direct write to reach the disk). The threads start on first
//! use.

use std::sync::{mpsc, Arc, Mutex, OnceLock};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The pool; its threads exit once it is dropped and the queue is empty.
#[derive(Debug, Default)]
pub(crate) struct DiskPool {
    tx: OnceLock<Option<mpsc::Sender<Job>>>,
}

/// Threads in the pool: two, or up to four on larger machines.
fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() / 2)
        .unwrap_or(2)
        .clamp(2, 4)
}

impl DiskPool {
    fn start() -> Option<mpsc::Sender<Job>> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut started = 0;
        for _ in 0..threads() {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name("webtorrent-disk".into())
                .spawn(move || loop {
                    let job = {
                        let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
                        rx.recv()
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => break,
                    }
                });
            match spawned {
                Ok(_) => started += 1,
                Err(e) => tracing::warn!("cannot start a disk thread: {e}"),
            }
        }
        (started > 0).then_some(tx)
    }

    /// Runs `job` on the pool (or, if no thread could start, on tokio's blocking pool).
    pub fn run<F: FnOnce() + Send + 'static>(&self, job: F) {
        let job: Job = Box::new(job);
        let job = match self.tx.get_or_init(Self::start) {
            Some(tx) => match tx.send(job) {
                Ok(()) => return,
                Err(e) => e.0,
            },
            None => job,
        };
        tokio::task::spawn_blocking(job);
    }
}

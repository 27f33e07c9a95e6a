//! A torrent's disk threads: piece reads, hashing and writes run there, in queue order.
//!
//! Two long-lived threads instead of tokio's blocking pool: no hand-off to a fresh pool thread
//! per piece, at most two pieces hashed at once (the connections keep the other cores), and one
//! thread can hash while the other waits for a direct write to reach the disk.

use std::sync::{mpsc, Arc, Mutex};

/// Threads per torrent.
const THREADS: usize = 2;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Handle on the threads; they exit once the handle is dropped and the queue is empty.
#[derive(Debug)]
pub(crate) struct DiskThread {
    tx: mpsc::Sender<Job>,
}

impl DiskThread {
    /// Starts the threads.
    pub fn spawn() -> std::io::Result<DiskThread> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..THREADS {
            let rx = rx.clone();
            std::thread::Builder::new()
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
                })?;
        }
        Ok(DiskThread { tx })
    }

    /// Queues `job`; gives it back if the thread is gone.
    pub fn run<F: FnOnce() + Send + 'static>(&self, job: F) -> Result<(), Job> {
        self.tx.send(Box::new(job)).map_err(|e| e.0)
    }
}

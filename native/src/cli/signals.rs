//! SIGINT and SIGTERM: exit at once while nothing needs cleaning up, stop cleanly after.

/// Set once SIGINT or SIGTERM arrived.
static INTERRUPTED: std::sync::OnceLock<tokio::sync::watch::Receiver<bool>> =
    std::sync::OnceLock::new();
/// From when a signal means "stop cleanly" (announce `stopped`, write resume records)
/// rather than "exit now".
static GRACEFUL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Signals from now on stop the command cleanly ([`wait_for_signal`] returns), even one that
/// arrives before the command waits for it; a second one exits at once.
pub fn graceful_from_now() {
    GRACEFUL.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Listens for SIGINT and SIGTERM from the start of a command. Before
/// [`graceful_from_now`] (while hashing, say) one exits at once, as without a handler; after
/// it, the first is kept for [`wait_for_signal`] and a second exits at once.
pub fn listen_for_signals() {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = tokio::sync::watch::channel(false);
    let signals =
        signal(SignalKind::terminate()).and_then(|t| Ok((t, signal(SignalKind::interrupt())?)));
    tokio::spawn(async move {
        let Ok((mut term, mut int)) = signals else {
            let _ = tokio::signal::ctrl_c().await;
            let _ = tx.send(true);
            return;
        };
        let mut stopping = false;
        loop {
            let code = tokio::select! {
                _ = term.recv() => 143,
                _ = int.recv() => 130,
            };
            if stopping || !GRACEFUL.load(std::sync::atomic::Ordering::SeqCst) {
                std::process::exit(code);
            }
            stopping = true;
            let _ = tx.send(true);
        }
    });
    let _ = INTERRUPTED.set(rx);
}

/// Returns once SIGINT or SIGTERM arrived (also if it arrived after [`graceful_from_now`]
/// but before this was called).
pub async fn wait_for_signal() {
    graceful_from_now();
    match INTERRUPTED.get() {
        Some(rx) => {
            let mut rx = rx.clone();
            let _ = rx.wait_for(|&v| v).await;
        }
        None => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

//! A token-bucket rate limiter shared by all connections of a client.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Limits throughput to `rate` bytes per second with a one-second burst.
#[derive(Debug)]
pub struct RateLimiter {
    rate: u64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    /// A limiter allowing `rate` bytes per second (at least 1 KiB/s).
    pub fn new(rate: u64) -> Self {
        let rate = rate.max(1024);
        RateLimiter {
            rate,
            state: Mutex::new((rate as f64, Instant::now())),
        }
    }

    /// The rate in bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Waits until `n` bytes may pass.
    pub async fn take(&self, n: usize) {
        let wait = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let refill = now.duration_since(s.1).as_secs_f64() * self.rate as f64;
            s.0 = (s.0 + refill).min(self.rate as f64);
            s.1 = now;
            s.0 -= n as f64;
            if s.0 < 0.0 {
                Duration::from_secs_f64(-s.0 / self.rate as f64)
            } else {
                Duration::ZERO
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn limits_sustained_rate() {
        let l = RateLimiter::new(100_000);
        let start = tokio::time::Instant::now();
        for _ in 0..30 {
            l.take(10_000).await;
        }
        // 300 kB at 100 kB/s with a 100 kB burst: at least 2 s of (virtual) time.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(1900), "{took:?}");
    }
}

//! A per-destination request rate limit shared by a worker's in-flight requests.

use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Spaces requests at least `1 / per_second` apart (no bursts: a destination's own limiter
/// may be strict about them).
pub struct RateLimiter {
    interval: Duration,
    /// The earliest time the next request may go.
    next: Mutex<Instant>,
}

impl RateLimiter {
    pub fn new(per_second: u32) -> Self {
        Self {
            interval: Duration::from_secs(1) / per_second.max(1),
            next: Mutex::new(Instant::now()),
        }
    }

    /// Takes a slot if one is free now; otherwise says when the next one is.
    pub fn try_acquire(&self) -> Result<(), Instant> {
        let Ok(mut next) = self.next.try_lock() else {
            return Err(Instant::now() + self.interval);
        };
        let now = Instant::now();
        if *next > now {
            return Err(*next);
        }
        *next = now + self.interval;
        Ok(())
    }

    /// Waits until a request may be sent.
    pub async fn acquire(&self) {
        let slot = {
            let mut next = self.next.lock().await;
            let slot = (*next).max(Instant::now());
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn requests_are_spaced() {
        let limiter = RateLimiter::new(10);
        let start = Instant::now();
        for _ in 0..5 {
            limiter.acquire().await;
        }
        // The first goes at once, the next four 100 ms apart.
        assert_eq!(start.elapsed(), Duration::from_millis(400));
    }

    #[tokio::test(start_paused = true)]
    async fn try_acquire_says_when_the_next_slot_is() {
        let limiter = RateLimiter::new(10);
        assert!(limiter.try_acquire().is_ok());
        let next = limiter.try_acquire().expect_err("the slot was just taken");
        assert_eq!(next - Instant::now(), Duration::from_millis(100));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(limiter.try_acquire().is_ok());
    }
}

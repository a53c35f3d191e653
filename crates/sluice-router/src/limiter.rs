//! A per-destination request rate limit shared by a worker's in-flight requests.

use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Spaces requests `1 / per_second` apart on average. Slots missed while the worker was busy
/// may be caught up, but only those of the last tenth of a second, so a burst stays small.
pub struct RateLimiter {
    interval: Duration,
    catch_up: Duration,
    /// The earliest time the next request may go.
    next: Mutex<Instant>,
}

impl RateLimiter {
    pub fn new(per_second: u32) -> Self {
        let interval = Duration::from_secs(1) / per_second.max(1);
        Self {
            interval,
            catch_up: Duration::from_millis(100).max(interval) - interval,
            next: Mutex::new(Instant::now()),
        }
    }

    /// The slot a request asking now gets, and books the one after it.
    fn book(&self, next: &mut Instant, now: Instant) -> Instant {
        let floor = now.checked_sub(self.catch_up).unwrap_or(now);
        let slot = (*next).max(floor);
        *next = slot + self.interval;
        slot
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
        self.book(&mut next, now);
        Ok(())
    }

    /// Waits until a request may be sent.
    pub async fn acquire(&self) {
        let slot = {
            let mut next = self.next.lock().await;
            self.book(&mut next, Instant::now())
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
    async fn missed_slots_are_caught_up_only_within_a_tenth_of_a_second() {
        let limiter = RateLimiter::new(100);
        tokio::time::sleep(Duration::from_secs(5)).await;
        // After a long idle time: the current slot plus 9 missed ones (90 ms at 10 ms).
        let at_once = (0..50)
            .take_while(|_| limiter.try_acquire().is_ok())
            .count();
        assert_eq!(at_once, 10);
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

//! Per-tenant rate limiting with token buckets, per pod. The bucket is pure (time passed in); the
//! limiter keeps one per tenant behind a mutex held for a few arithmetic operations.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use uuid::Uuid;

use crate::error::ApiError;

/// A token bucket: `rate` tokens per second up to `burst`; a request takes one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    tokens: f64,
    /// Seconds (any fixed origin) of the last refill.
    at: f64,
}

impl Bucket {
    pub fn full(burst: f64, now: f64) -> Self {
        Self { tokens: burst, at: now }
    }

    /// Takes a token at `now` (seconds), or says how many seconds until one is there.
    pub fn take(&mut self, rate: f64, burst: f64, now: f64) -> Result<(), f64> {
        let elapsed = (now - self.at).max(0.0);
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else if rate > 0.0 {
            Err((1.0 - self.tokens) / rate)
        } else {
            Err(f64::INFINITY)
        }
    }
}

pub struct RateLimiter {
    rate: f64,
    burst: f64,
    origin: Instant,
    buckets: Mutex<HashMap<Uuid, Bucket>>,
}

impl RateLimiter {
    pub fn new(rate_per_second: f64, burst: f64) -> Self {
        Self { rate: rate_per_second, burst: burst.max(1.0), origin: Instant::now(), buckets: Mutex::default() }
    }

    /// Charges one request to `tenant`; 429 with the wait when its bucket is empty.
    pub fn check(&self, tenant: Uuid) -> Result<(), ApiError> {
        let now = self.origin.elapsed().as_secs_f64();
        // A poisoned map only means a panic elsewhere mid-update of plain numbers; keep going.
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.entry(tenant).or_insert_with(|| Bucket::full(self.burst, now));
        bucket.take(self.rate, self.burst, now).map_err(|wait| ApiError::RateLimited {
            retry_after_secs: if wait.is_finite() { wait.ceil() as u64 } else { 60 },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_allows_a_burst_then_refuses_with_the_wait_for_the_next_token() {
        let mut b = Bucket::full(3.0, 0.0);
        for _ in 0..3 {
            assert_eq!(b.take(2.0, 3.0, 0.0), Ok(()));
        }
        assert_eq!(b.take(2.0, 3.0, 0.0), Err(0.5));
    }

    #[test]
    fn tokens_refill_at_the_rate_up_to_the_burst() {
        let cases = [
            // (seconds idle after emptying, requests that then pass)
            (0.5, 1),
            (1.0, 2),
            (10.0, 3),
        ];
        for (idle, passes) in cases {
            let mut b = Bucket::full(3.0, 0.0);
            for _ in 0..3 {
                b.take(2.0, 3.0, 0.0).expect("burst");
            }
            let passed = (0..10).filter(|_| b.take(2.0, 3.0, idle).is_ok()).count();
            assert_eq!(passed, passes, "after {idle} s");
        }
    }

    #[test]
    fn tenants_have_separate_buckets() {
        let limiter = RateLimiter::new(0.001, 2.0);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert!(limiter.check(a).is_ok() && limiter.check(a).is_ok());
        assert!(matches!(limiter.check(a), Err(ApiError::RateLimited { .. })));
        assert!(limiter.check(b).is_ok(), "another tenant is not affected");
    }
}

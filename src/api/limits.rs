//! Rate limits (`[api.rate_limit]`): GCRA buckets (governor) per source address, per
//! API key, and for failed keys per source. A source over its failed-key budget is
//! blocked for the time the budget takes to refill: every request of it that carries
//! a key gets 429 before the key is compared, so guessing stops there.
//!
//! Sources are counted as the connection cap counts them (an IPv6 /64 is one). The
//! buckets live with the configuration in force, so a SIGHUP starts them afresh.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::server::source_of;
use crate::config::RateLimitConfig;

/// The limiters of one configuration.
pub(crate) struct Limits {
    per_source: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Keyed by the key's entry (see `auth::KeyDigests`).
    per_key: Option<DefaultKeyedRateLimiter<usize>>,
    failed: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Sources over their failed-key budget, and until when.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    clock: DefaultClock,
}

fn quota(per: u32, burst: u32, every: fn(NonZeroU32) -> Quota) -> Option<Quota> {
    let per = NonZeroU32::new(per)?;
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
    Some(every(per).allow_burst(burst))
}

impl Limits {
    pub(crate) fn new(config: &RateLimitConfig) -> Limits {
        Limits {
            per_source: quota(
                config.per_source,
                config.per_source_burst,
                Quota::per_second,
            )
            .map(RateLimiter::keyed),
            per_key: quota(config.per_key, config.per_key_burst, Quota::per_second)
                .map(RateLimiter::keyed),
            failed: quota(
                config.failed_keys_per_minute,
                config.failed_keys_per_minute,
                Quota::per_minute,
            )
            .map(RateLimiter::keyed),
            blocked: Mutex::new(HashMap::new()),
            clock: DefaultClock::default(),
        }
    }

    /// One request from `source`: `Err(wait)` when over the limit.
    pub(crate) fn source(&self, source: IpAddr) -> Result<(), Duration> {
        match &self.per_source {
            Some(limiter) => limiter
                .check_key(&source_of(source))
                .map_err(|no| no.wait_time_from(self.clock.now())),
            None => Ok(()),
        }
    }

    /// One request with key entry `key`.
    pub(crate) fn key(&self, key: usize) -> Result<(), Duration> {
        match &self.per_key {
            Some(limiter) => limiter
                .check_key(&key)
                .map_err(|no| no.wait_time_from(self.clock.now())),
            None => Ok(()),
        }
    }

    /// How long `source` stays blocked for failed keys, if it is.
    pub(crate) fn blocked(&self, source: IpAddr) -> Option<Duration> {
        let source = source_of(source);
        let mut blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
        let until = *blocked.get(&source)?;
        let now = Instant::now();
        if until > now {
            Some(until - now)
        } else {
            blocked.remove(&source);
            None
        }
    }

    /// A request from `source` failed its key; `Some(wait)` when that used up the
    /// source's budget (it is blocked for `wait`).
    pub(crate) fn key_failed(&self, source: IpAddr) -> Option<Duration> {
        let limiter = self.failed.as_ref()?;
        let source = source_of(source);
        let wait = limiter
            .check_key(&source)
            .err()?
            .wait_time_from(self.clock.now());
        // Blocked until one more attempt fits again.
        let wait = wait.max(Duration::from_secs(1));
        self.blocked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(source, Instant::now() + wait);
        Some(wait)
    }

    /// Forgets sources whose buckets are full again, so memory follows the sources
    /// seen lately, not every source ever seen.
    pub(crate) fn sweep(&self) {
        for limiter in [&self.per_source, &self.failed].into_iter().flatten() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(limiter) = &self.per_key {
            limiter.retain_recent();
        }
        let now = Instant::now();
        self.blocked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, until| *until > now);
    }
}

/// `Retry-After` for a wait: whole seconds, rounded up, at least 1.
pub(crate) fn retry_after(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_source_gets_its_burst_then_waits() {
        let limits = Limits::new(&RateLimitConfig {
            per_source: 1,
            per_source_burst: 3,
            ..RateLimitConfig::default()
        });
        for _ in 0..3 {
            assert!(limits.source(ip("192.0.2.1")).is_ok());
        }
        let wait = limits.source(ip("192.0.2.1")).unwrap_err();
        assert!(wait <= Duration::from_secs(1));
        assert_eq!(retry_after(wait), 1);
        assert!(limits.source(ip("192.0.2.2")).is_ok(), "another source");
        // An IPv6 /64 is one source.
        for _ in 0..3 {
            assert!(limits.source(ip("2001:db8::1")).is_ok());
        }
        assert!(limits.source(ip("2001:db8::2")).is_err());
    }

    #[test]
    fn failed_keys_block_the_source_until_the_budget_refills() {
        let limits = Limits::new(&RateLimitConfig {
            failed_keys_per_minute: 2,
            ..RateLimitConfig::default()
        });
        let src = ip("198.51.100.9");
        assert_eq!(limits.key_failed(src), None);
        assert_eq!(limits.key_failed(src), None);
        assert!(limits.blocked(src).is_none());
        let wait = limits.key_failed(src).unwrap();
        assert!(wait > Duration::from_secs(20) && wait <= Duration::from_secs(30));
        assert!(limits.blocked(src).is_some());
        assert!(limits.blocked(ip("198.51.100.10")).is_none());
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let limits = Limits::new(&RateLimitConfig {
            per_source: 0,
            per_key: 0,
            failed_keys_per_minute: 0,
            ..RateLimitConfig::default()
        });
        for _ in 0..10_000 {
            assert!(limits.source(ip("192.0.2.1")).is_ok());
            assert!(limits.key(0).is_ok());
            assert!(limits.key_failed(ip("192.0.2.1")).is_none());
        }
    }
}

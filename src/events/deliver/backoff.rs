//! When to try again: exponential backoff with jitter, and the receiver's `Retry-After`.

use std::time::{Duration, SystemTime};

/// The delay before retry number `retry` (1 for the first retry): `first` doubled
/// `retry - 1` times, capped at `max`, then jittered down by up to a fifth so that the
/// retries of many events failed together do not arrive together again.
pub fn retry_delay(first: Duration, max: Duration, retry: u32, jitter: f64) -> Duration {
    let doublings = retry.saturating_sub(1).min(40);
    let base = first
        .checked_mul(1u32 << doublings.min(31))
        .unwrap_or(max)
        .min(max);
    base.mul_f64(1.0 - 0.2 * jitter.clamp(0.0, 1.0))
}

/// `Retry-After`: delay-seconds, or an HTTP-date (RFC 9110 section 10.2.3), as a delay
/// from `now`. A date in the past is no delay.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A number in [0, 1) from the operating system's randomness (0.5 if it has none:
/// jitter is a courtesy to receivers, not a security matter).
pub fn jitter() -> f64 {
    let mut raw = [0u8; 4];
    match getrandom::getrandom(&mut raw) {
        Ok(()) => f64::from(u32::from_le_bytes(raw)) / (f64::from(u32::MAX) + 1.0),
        Err(_) => 0.5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_the_first_up_to_the_cap() {
        let first = Duration::from_secs(1);
        let max = Duration::from_secs(3600);
        let delays: Vec<u64> = (1..=14)
            .map(|n| retry_delay(first, max, n, 0.0).as_secs())
            .collect();
        assert_eq!(
            delays,
            [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 3600, 3600]
        );
        assert_eq!(retry_delay(first, max, 1000, 0.0), max);
        // Jitter takes at most a fifth off.
        assert_eq!(retry_delay(first, max, 3, 1.0), Duration::from_millis(3200));
    }

    #[test]
    fn the_default_36_attempts_span_more_than_a_day() {
        let (first, max) = (Duration::from_secs(1), Duration::from_secs(3600));
        let span: Duration = (1..36).map(|n| retry_delay(first, max, n, 0.0)).sum();
        assert!(span > Duration::from_secs(86_400), "{span:?}");
        assert!(span < Duration::from_secs(26 * 3600), "{span:?}");
        // With jitter at its most, still most of a day.
        let short: Duration = (1..36).map(|n| retry_delay(first, max, n, 1.0)).sum();
        assert!(short > Duration::from_secs(19 * 3600), "{short:?}");
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = httpdate::parse_http_date("Wed, 04 Mar 2026 09:00:00 GMT").expect("date");
        assert_eq!(retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            retry_after("Wed, 04 Mar 2026 09:01:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            retry_after("Wed, 04 Mar 2026 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-1", now), None);
    }
}

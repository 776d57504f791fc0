use crate::Deadline;
use std::future::Future;
use std::time::Duration;

/// A bounded backoff: at most `attempts` tries, waits doubling from `first` up to `max`,
/// with jitter, and never a wait past the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub attempts: u32,
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    /// For conflicts and throttling on control-plane calls (Lambda, ECS): 6 tries over about 15 s.
    pub const CONTROL_PLANE: Backoff =
        Backoff { attempts: 6, first: Duration::from_millis(500), max: Duration::from_secs(5) };

    /// The wait before try number `attempt + 1` (attempt counts from 1), before jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX);
        self.first.saturating_mul(factor).min(self.max)
    }
}

/// Runs `op` until it succeeds, fails with an error `retryable` rejects, runs out of attempts,
/// or the next wait would pass `deadline`. Returns the last result.
pub async fn retry<T, E, F, Fut>(
    what: &str,
    policy: Backoff,
    deadline: Deadline,
    retryable: impl Fn(&E) -> bool,
    mut op: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < policy.attempts && retryable(&e) => {
                let wait = jitter(policy.delay(attempt));
                if wait >= deadline.remaining() {
                    tracing::warn!(what, attempt, "not retrying: the deadline is too close");
                    return Err(e);
                }
                tracing::info!(what, attempt, wait_ms = wait.as_millis() as u64, "retrying");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Between 75% and 100% of `d`, so that concurrent callers spread out.
fn jitter(d: Duration) -> Duration {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|t| t.subsec_nanos()).unwrap_or(0);
    let quarter = d / 4;
    let spread = quarter.mul_f64(f64::from(nanos % 1000) / 1000.0);
    d - quarter + spread
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn delays_double_up_to_the_cap() {
        let b = Backoff::CONTROL_PLANE;
        assert_eq!(b.delay(1), Duration::from_millis(500));
        assert_eq!(b.delay(2), Duration::from_secs(1));
        assert_eq!(b.delay(4), Duration::from_secs(4));
        assert_eq!(b.delay(5), Duration::from_secs(5));
        assert_eq!(b.delay(40), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn retries_a_retryable_error_until_success() {
        let calls = Cell::new(0);
        let r: Result<u32, &str> = retry(
            "op",
            Backoff::CONTROL_PLANE,
            Deadline::after(Duration::from_secs(60)),
            |_| true,
            || {
                calls.set(calls.get() + 1);
                let n = calls.get();
                async move {
                    if n < 3 {
                        Err("conflict")
                    } else {
                        Ok(n)
                    }
                }
            },
        )
        .await;
        assert_eq!(r, Ok(3));
        assert_eq!(calls.get(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn stops_after_the_last_attempt() {
        let calls = Cell::new(0);
        let r: Result<(), &str> = retry(
            "op",
            Backoff::CONTROL_PLANE,
            Deadline::after(Duration::from_secs(600)),
            |_| true,
            || {
                calls.set(calls.get() + 1);
                async { Err("conflict") }
            },
        )
        .await;
        assert_eq!(r, Err("conflict"));
        assert_eq!(calls.get(), Backoff::CONTROL_PLANE.attempts);
    }

    #[tokio::test(start_paused = true)]
    async fn does_not_retry_what_is_not_retryable_nor_wait_past_the_deadline() {
        let calls = Cell::new(0);
        let r: Result<(), &str> = retry(
            "op",
            Backoff::CONTROL_PLANE,
            Deadline::after(Duration::from_secs(60)),
            |e| *e == "conflict",
            || {
                calls.set(calls.get() + 1);
                async { Err("denied") }
            },
        )
        .await;
        assert_eq!((r, calls.get()), (Err("denied"), 1));

        calls.set(0);
        let r: Result<(), &str> = retry(
            "op",
            Backoff::CONTROL_PLANE,
            Deadline::after(Duration::from_millis(100)),
            |_| true,
            || {
                calls.set(calls.get() + 1);
                async { Err("conflict") }
            },
        )
        .await;
        assert_eq!((r, calls.get()), (Err("conflict"), 1));
    }
}

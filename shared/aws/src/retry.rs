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
    /// For conflicts, throttling and transient faults on control-plane calls (Lambda, ECS, STS,
    /// CloudWatch): tries go on for as long as the deadline allows, waits doubling from 250 ms to 5 s.
    pub const CONTROL_PLANE: Backoff =
        Backoff { attempts: u32::MAX, first: Duration::from_millis(250), max: Duration::from_secs(5) };

    /// For the ledger (DynamoDB): as long as the deadline allows, waits doubling from 50 ms to 2 s.
    pub const LEDGER: Backoff =
        Backoff { attempts: u32::MAX, first: Duration::from_millis(50), max: Duration::from_secs(2) };

    /// The wait before try number `attempt + 1` (attempt counts from 1), before jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX);
        self.first.saturating_mul(factor).min(self.max)
    }
}

/// An error that says the deadline came before the call answered. An attempt still under way
/// at the deadline is cut: nothing may act on the caller's behalf after it (the request may
/// still have been applied: the caller treats it as an answer lost).
pub trait DeadlineReached {
    fn deadline_reached(what: &str) -> Self;
}

impl<E, R> DeadlineReached for aws_smithy_runtime_api::client::result::SdkError<E, R> {
    fn deadline_reached(what: &str) -> Self {
        Self::timeout_error(format!("{what}: cut at the caller's deadline before AWS answered"))
    }
}

impl DeadlineReached for &'static str {
    fn deadline_reached(_: &str) -> Self {
        "deadline"
    }
}

/// Runs `op` until it succeeds, fails with an error `retryable` rejects, runs out of attempts,
/// or the next wait would pass `deadline`; an attempt still running at `deadline` is cut.
/// Returns the last result.
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
    E: DeadlineReached,
{
    let mut attempt = 1;
    loop {
        let result = match tokio::time::timeout_at(deadline.instant(), op()).await {
            Ok(result) => result,
            Err(_) => Err(E::deadline_reached(what)),
        };
        match result {
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

/// Between 50% and 100% of `d`, so that concurrent callers spread out.
fn jitter(d: Duration) -> Duration {
    use std::hash::BuildHasher;
    // A fresh RandomState is randomly keyed: enough randomness for jitter, with no extra crate.
    let r = std::collections::hash_map::RandomState::new().hash_one(std::time::Instant::now());
    let half = d / 2;
    half + half.mul_f64((r % 1024) as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    const SIX: Backoff = Backoff { attempts: 6, first: Duration::from_millis(500), max: Duration::from_secs(5) };

    #[test]
    fn delays_double_up_to_the_cap() {
        let b = SIX;
        assert_eq!(b.delay(1), Duration::from_millis(500));
        assert_eq!(b.delay(2), Duration::from_secs(1));
        assert_eq!(b.delay(4), Duration::from_secs(4));
        assert_eq!(b.delay(5), Duration::from_secs(5));
        assert_eq!(b.delay(40), Duration::from_secs(5));
        for _ in 0..100 {
            let j = jitter(Duration::from_secs(2));
            assert!(j >= Duration::from_secs(1) && j <= Duration::from_secs(2), "{j:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn control_plane_retries_go_on_until_the_deadline_not_a_fixed_count() {
        let calls = Cell::new(0);
        let r: Result<(), &str> = retry(
            "op",
            Backoff::CONTROL_PLANE,
            Deadline::after(Duration::from_secs(60)),
            |_| true,
            || {
                calls.set(calls.get() + 1);
                async { Err("throttled") }
            },
        )
        .await;
        assert_eq!(r, Err("throttled"));
        // 60 s of waits of at most 5 s each: far more than three tries, and it stops.
        assert!(calls.get() > 12, "{}", calls.get());
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_still_running_at_the_deadline_is_cut() {
        let r: Result<(), &str> = retry(
            "op",
            SIX,
            Deadline::after(Duration::from_secs(5)),
            |_| true,
            || async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(())
            },
        )
        .await;
        assert_eq!(r, Err("deadline"));
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
            SIX,
            Deadline::after(Duration::from_secs(600)),
            |_| true,
            || {
                calls.set(calls.get() + 1);
                async { Err("conflict") }
            },
        )
        .await;
        assert_eq!(r, Err("conflict"));
        assert_eq!(calls.get(), SIX.attempts);
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

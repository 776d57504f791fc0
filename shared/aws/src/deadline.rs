use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// A point in time no wait may outlive. Built from the Lambda invocation's deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(Instant);

impl Deadline {
    /// A deadline `budget` from now.
    pub fn after(budget: Duration) -> Self {
        Self(Instant::now() + budget)
    }

    /// The deadline of a Lambda invocation (milliseconds since the epoch, as the Runtime API gives it).
    ///
    /// A runtime that gives a deadline already in the past (cargo-lambda's local runtime sends a
    /// constant 600 000 ms, i.e. 1970) gives no usable budget: then `fallback` from now applies,
    /// so every wait stays bounded either way.
    pub fn from_epoch_millis(deadline_ms: u64, fallback: Duration) -> Self {
        match deadline_ms.checked_sub(now_epoch_millis()) {
            Some(left) if left > 0 => Self::after(Duration::from_millis(left)),
            _ => Self::after(fallback),
        }
    }

    /// The moment given in milliseconds since the epoch (now, if it has passed).
    pub fn at_epoch_millis(epoch_ms: u64) -> Self {
        Self::after(Duration::from_millis(epoch_ms.saturating_sub(now_epoch_millis())))
    }

    /// Time left before the deadline (zero once it has passed).
    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// This deadline brought forward by `margin` (never before now).
    pub fn less(&self, margin: Duration) -> Self {
        let earlier = self.0.checked_sub(margin).unwrap_or(self.0);
        Self(earlier.max(Instant::now()))
    }

    /// The earlier of this deadline and `budget` from now.
    pub fn at_most(&self, budget: Duration) -> Self {
        Self(self.0.min(Instant::now() + budget))
    }

    /// The earlier of this deadline and one given in milliseconds since the epoch (a deadline
    /// that travelled in a request from the party that answers for the work).
    pub fn min_epoch_millis(&self, epoch_ms: Option<u64>) -> Self {
        match epoch_ms {
            None => *self,
            Some(ms) => {
                let left = ms.saturating_sub(now_epoch_millis());
                Self(self.0.min(Instant::now() + Duration::from_millis(left)))
            }
        }
    }

    /// This deadline in milliseconds since the epoch, to travel in a request.
    pub fn epoch_millis(&self) -> u64 {
        now_epoch_millis().saturating_add(self.remaining().as_millis() as u64)
    }

    pub fn has_passed(&self) -> bool {
        self.remaining().is_zero()
    }

    pub fn instant(&self) -> Instant {
        self.0
    }
}

/// Milliseconds since the epoch, now.
pub fn now_epoch_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_deadline_in_the_past_falls_back_to_a_bounded_budget() {
        let d = Deadline::from_epoch_millis(600_000, Duration::from_secs(300));
        assert_eq!(d.remaining(), Duration::from_secs(300));
    }

    #[tokio::test(start_paused = true)]
    async fn a_future_deadline_is_kept() {
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        let d = Deadline::from_epoch_millis(now_ms + 60_000, Duration::from_secs(300));
        let left = d.remaining();
        assert!(left <= Duration::from_secs(60) && left > Duration::from_secs(55), "{left:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_from_a_request_only_ever_brings_the_deadline_forward() {
        let d = Deadline::after(Duration::from_secs(100));
        let sooner = d.min_epoch_millis(Some(now_epoch_millis() + 30_000));
        assert!(sooner.remaining() <= Duration::from_secs(30) && sooner.remaining() > Duration::from_secs(29));
        assert_eq!(d.min_epoch_millis(Some(now_epoch_millis() + 500_000)), d);
        assert_eq!(d.min_epoch_millis(None), d);
        assert!(d.min_epoch_millis(Some(1)).has_passed());
        let ms = d.epoch_millis();
        assert!(ms.abs_diff(now_epoch_millis() + 100_000) < 50, "{ms}");
    }

    #[tokio::test(start_paused = true)]
    async fn margins_never_move_a_deadline_before_now() {
        let d = Deadline::after(Duration::from_secs(10));
        assert_eq!(d.less(Duration::from_secs(4)).remaining(), Duration::from_secs(6));
        assert!(d.less(Duration::from_secs(40)).has_passed());
        assert_eq!(d.at_most(Duration::from_secs(3)).remaining(), Duration::from_secs(3));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(d.has_passed());
    }
}

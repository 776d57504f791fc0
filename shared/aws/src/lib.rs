//! What every crossdeploy function needs around the AWS SDK:
//! a [`Deadline`] that every wait respects, a bounded [`retry`] with backoff,
//! and [`ErrorInfo`]: the AWS error code and message of a failed call, for errors that say what failed.

mod deadline;
mod error;
#[cfg(feature = "invoke")]
pub mod invoke;
mod retry;
mod updater;

pub use deadline::Deadline;
pub use error::{is_access_denied_code, is_throttling_code, ErrorInfo};
pub use retry::{retry, Backoff};
pub use updater::{handle_updater_request, UpdaterFailure};

/// JSON logs for CloudWatch, filtered by `RUST_LOG` (default `info`). Call once at start.
/// Nothing crossdeploy logs holds a credential or a whole event; this adds no environment either.
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_target(false)
        .without_time() // CloudWatch stamps every line
        .try_init();
}

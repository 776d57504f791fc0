//! What every crossdeploy function needs around the AWS SDK:
//! a [`Deadline`] that every wait respects, a bounded [`retry`] with backoff,
//! and [`ErrorInfo`]: the AWS error code and message of a failed call, for errors that say what failed.

mod deadline;
mod error;
#[cfg(feature = "invoke")]
pub mod invoke;
pub mod metrics;
mod retry;
mod updater;

pub use deadline::{now_epoch_millis, Deadline};
pub use error::{is_access_denied_code, is_throttling_code, is_transient, is_transient_code, ErrorInfo};
pub use retry::{retry, Backoff, DeadlineReached};
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

/// Timeouts for every AWS call: no call may hang a function until its Lambda timeout. A stalled
/// connection is cut and retried, within the caller's deadline.
pub fn sdk_timeouts() -> aws_smithy_types::timeout::TimeoutConfig {
    aws_smithy_types::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(3))
        .operation_attempt_timeout(std::time::Duration::from_secs(30))
        .build()
}

/// The SDK configuration every function starts with: the environment's (region, credentials,
/// `AWS_ENDPOINT_URL*`), the SDK's standard retries, and [`sdk_timeouts`].
pub async fn load_sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest()).timeout_config(sdk_timeouts()).load().await
}

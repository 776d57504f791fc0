//! What every crossdeploy function needs around the AWS SDK:
//! a [`Deadline`] that every wait respects, a bounded [`retry`] with backoff,
//! and [`ErrorInfo`]: the AWS error code and message of a failed call, for errors that say what failed.

mod deadline;
mod error;
mod retry;

pub use deadline::Deadline;
pub use error::{is_access_denied_code, is_throttling_code, ErrorInfo};
pub use retry::{retry, Backoff};

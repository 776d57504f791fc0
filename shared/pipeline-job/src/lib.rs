//! One CodePipeline job, whichever way it arrives, its typed configuration, and the one answer it gets.
//!
//! - [`Job`]: from the `CodePipeline.job` event of an Invoke action ([`Job::from_invoke_event`]);
//!   the custom-action path (PollForJobs) produces the same type.
//! - [`DeployConfig`]: the configuration contract of DESIGN.md, parsed with errors that name the key.
//! - [`answer_job`]: `PutJobSuccessResult` / `PutJobFailureResult`, and [`fetch_pipeline_context`].

mod config;
mod job;
mod report;

pub use config::{parse_configuration, parse_user_parameters, ConfigError, DeployConfig, Kind};
pub use job::{InputArtifact, Job, JobError, JobSource};
pub use report::{
    answer_job, fetch_pipeline_context, Answered, JobAnswer, ReportError, Success,
    MAX_CONTINUATION_TOKEN,
};

use aws_sdk_codepipeline::types::{ExecutionDetails, FailureDetails, FailureType as CpFailureType};
use aws_sdk_codepipeline::Client;
use crossdeploy_aws::{is_transient, retry, Backoff, Deadline, ErrorInfo};
use crossdeploy_protocol::{FailureType, PipelineContext};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// CodePipeline's limits on what an answer carries.
const MAX_SUMMARY: usize = 2048;
const MAX_FAILURE_MESSAGE: usize = 5000;
const MAX_EXTERNAL_EXECUTION_ID: usize = 1500;
/// A continuation token longer than this is refused by CodePipeline.
pub const MAX_CONTINUATION_TOKEN: usize = 2048;

/// The one answer a job gets. It is recorded in the ledger (as JSON) before it is sent, so
/// that a retry sends exactly this answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobAnswer {
    Success(Success),
    Failure { failure_type: FailureType, message: String, external_execution_id: Option<String> },
}

impl JobAnswer {
    /// "Succeeded", "InProgress" (a continuation), or the failure type.
    pub fn label(&self) -> &'static str {
        match self {
            JobAnswer::Success(s) if s.continuation_token.is_some() => "InProgress",
            JobAnswer::Success(_) => "Succeeded",
            JobAnswer::Failure { failure_type, .. } => failure_type.as_str(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Success {
    pub summary: String,
    pub external_execution_id: Option<String>,
    pub percent_complete: Option<u8>,
    pub output_variables: std::collections::BTreeMap<String, String>,
    /// Set: the work goes on, and CodePipeline sends a new job carrying this token.
    pub continuation_token: Option<String>,
}

/// What became of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    /// CodePipeline took it.
    Now,
    /// The job had its answer already (`InvalidJobStateException`): nothing changed.
    Already,
}

#[derive(Debug, thiserror::Error)]
#[error("failed to answer CodePipeline job {job_id} ({operation}): {error}")]
pub struct ReportError {
    pub job_id: String,
    pub operation: &'static str,
    pub error: ErrorInfo,
}

/// Sends the answer, retrying throttling and transient faults until `deadline`. A retry whose
/// first attempt was applied (its answer lost) meets `InvalidJobStateException`: answered.
pub async fn answer_job(
    client: &Client,
    job_id: &str,
    answer: &JobAnswer,
    deadline: Deadline,
) -> Result<Answered, ReportError> {
    let result = retry(
        "PutJobResult",
        Backoff::CONTROL_PLANE,
        deadline,
        |f: &Failed| f.3,
        || put_answer(client, job_id, answer),
    )
    .await;
    match result {
        Ok(()) => Ok(Answered::Now),
        Err(Failed(true, error, operation, _)) => {
            tracing::warn!(job_id, operation, %error, "the job was answered already; nothing changed");
            Ok(Answered::Already)
        }
        Err(Failed(false, error, operation, _)) => Err(ReportError { job_id: job_id.to_owned(), operation, error }),
    }
}

/// A failed attempt: answered already, the error, the operation, transient.
struct Failed(bool, ErrorInfo, &'static str, bool);

impl crossdeploy_aws::DeadlineReached for Failed {
    fn deadline_reached(what: &str) -> Self {
        Failed(
            false,
            ErrorInfo { code: None, message: format!("{what}: no answer before the deadline") },
            "PutJobResult",
            true,
        )
    }
}

/// One attempt.
async fn put_answer(client: &Client, job_id: &str, answer: &JobAnswer) -> Result<(), Failed> {
    match answer {
        JobAnswer::Success(s) => {
            let details = ExecutionDetails::builder()
                .summary(truncate(&s.summary, MAX_SUMMARY))
                .set_external_execution_id(
                    s.external_execution_id.as_deref().map(|e| truncate(e, MAX_EXTERNAL_EXECUTION_ID)),
                )
                .set_percent_complete(s.percent_complete.map(|p| i32::from(p.min(100))))
                .build();
            let outputs: Option<HashMap<String, String>> = (!s.output_variables.is_empty())
                .then(|| s.output_variables.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
            client
                .put_job_success_result()
                .job_id(job_id)
                .execution_details(details)
                .set_output_variables(outputs)
                .set_continuation_token(s.continuation_token.clone())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| {
                    let already = e.as_service_error().is_some_and(|s| s.is_invalid_job_state_exception());
                    Failed(already, ErrorInfo::from_sdk(&e), "PutJobSuccessResult", is_transient(&e))
                })
        }
        JobAnswer::Failure { failure_type, message, external_execution_id } => {
            let details = FailureDetails::builder()
                .r#type(match failure_type {
                    FailureType::ConfigurationError => CpFailureType::ConfigurationError,
                    FailureType::PermissionError => CpFailureType::PermissionError,
                    FailureType::JobFailed => CpFailureType::JobFailed,
                })
                .message(truncate(message, MAX_FAILURE_MESSAGE))
                .set_external_execution_id(
                    external_execution_id.as_deref().map(|e| truncate(e, MAX_EXTERNAL_EXECUTION_ID)),
                )
                .build()
                .map_err(|e| {
                    Failed(false, ErrorInfo { code: None, message: e.to_string() }, "PutJobFailureResult", false)
                });
            match details {
                Err(e) => Err(e),
                Ok(details) => client
                    .put_job_failure_result()
                    .job_id(job_id)
                    .failure_details(details)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| {
                        let already = e.as_service_error().is_some_and(|s| s.is_invalid_job_state_exception());
                        Failed(already, ErrorInfo::from_sdk(&e), "PutJobFailureResult", is_transient(&e))
                    }),
            }
        }
    }
}

/// A job's details (`GetJobDetails`), throttling and transient faults retried until `deadline`.
pub async fn job_details(
    client: &Client,
    job_id: &str,
    deadline: Deadline,
) -> Result<aws_sdk_codepipeline::types::JobDetails, ErrorInfo> {
    let out = retry("GetJobDetails", Backoff::CONTROL_PLANE, deadline, is_transient, || {
        client.get_job_details().job_id(job_id).send()
    })
    .await
    .map_err(|e| ErrorInfo::from_sdk(&e))?;
    out.job_details.ok_or_else(|| ErrorInfo { code: None, message: "GetJobDetails gave no job details".into() })
}

/// Pipeline name, execution id, stage and action of a job (`GetJobDetails`): the Invoke event
/// does not carry them.
pub async fn fetch_pipeline_context(
    client: &Client,
    job_id: &str,
    deadline: Deadline,
) -> Result<PipelineContext, ErrorInfo> {
    let details = job_details(client, job_id, deadline).await?;
    let ctx = details.data.and_then(|d| d.pipeline_context);
    Ok(PipelineContext {
        job_id: job_id.to_owned(),
        pipeline_name: ctx.as_ref().and_then(|c| c.pipeline_name.clone()),
        execution_id: ctx.as_ref().and_then(|c| c.pipeline_execution_id.clone()),
        stage: ctx.as_ref().and_then(|c| c.stage.as_ref()).and_then(|s| s.name.clone()),
        action: ctx.as_ref().and_then(|c| c.action.as_ref()).and_then(|a| a.name.clone()),
    })
}

/// At most `max` characters, cut on a character boundary, marked when cut.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_codepipeline::operation::put_job_failure_result::PutJobFailureResultOutput;
    use aws_sdk_codepipeline::operation::put_job_success_result::{
        PutJobSuccessResultError, PutJobSuccessResultOutput,
    };
    use aws_sdk_codepipeline::types::error::InvalidJobStateException;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    #[tokio::test]
    async fn success_carries_summary_outputs_and_continuation() {
        let rule = mock!(Client::put_job_success_result)
            .match_requests(|r| {
                let d = r.execution_details().unwrap();
                r.job_id() == Some("job-1")
                    && d.summary() == Some("deployed")
                    && d.percent_complete() == Some(100)
                    && d.external_execution_id() == Some("job-1")
                    && r.output_variables().unwrap()["FunctionVersion"] == "7"
                    && r.continuation_token().is_none()
            })
            .then_output(|| PutJobSuccessResultOutput::builder().build());
        let client = mock_client!(aws_sdk_codepipeline, RuleMode::MatchAny, [&rule]);
        let answer = JobAnswer::Success(Success {
            summary: "deployed".into(),
            external_execution_id: Some("job-1".into()),
            percent_complete: Some(100),
            output_variables: [("FunctionVersion".to_string(), "7".to_string())].into(),
            continuation_token: None,
        });
        assert_eq!(
            answer_job(&client, "job-1", &answer, Deadline::after(std::time::Duration::from_secs(10))).await.unwrap(),
            Answered::Now
        );
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn failure_carries_its_type_and_a_bounded_message() {
        let rule = mock!(Client::put_job_failure_result)
            .match_requests(|r| {
                let d = r.failure_details().unwrap();
                d.r#type() == &CpFailureType::PermissionError && d.message().chars().count() == MAX_FAILURE_MESSAGE
            })
            .then_output(|| PutJobFailureResultOutput::builder().build());
        let client = mock_client!(aws_sdk_codepipeline, RuleMode::MatchAny, [&rule]);
        let answer = JobAnswer::Failure {
            failure_type: FailureType::PermissionError,
            message: "x".repeat(9000),
            external_execution_id: None,
        };
        answer_job(&client, "job-1", &answer, Deadline::after(std::time::Duration::from_secs(10))).await.unwrap();
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_transient_fault_is_retried_and_a_retry_meeting_its_own_answer_counts_as_answered() {
        let unavailable = mock!(Client::put_job_success_result)
            .sequence()
            .http_status(503, None)
            .times(2)
            .error(|| {
                PutJobSuccessResultError::InvalidJobStateException(
                    InvalidJobStateException::builder().message("job is not in progress").build(),
                )
            })
            .build();
        let client = mock_client!(aws_sdk_codepipeline, RuleMode::Sequential, [&unavailable]);
        let answer = JobAnswer::Success(Success::default());
        let d = Deadline::after(std::time::Duration::from_secs(60));
        assert_eq!(answer_job(&client, "job-1", &answer, d).await.unwrap(), Answered::Already);
        assert_eq!(unavailable.num_calls(), 3);
    }

    #[test]
    fn answers_round_trip_through_the_ledgers_json() {
        let answer = JobAnswer::Success(Success {
            summary: "waiting".into(),
            continuation_token: Some("crossdeploy:v1:job-1".into()),
            ..Success::default()
        });
        assert_eq!(answer.label(), "InProgress");
        let json = serde_json::to_string(&answer).unwrap();
        assert_eq!(serde_json::from_str::<JobAnswer>(&json).unwrap(), answer);
        let failed = JobAnswer::Failure {
            failure_type: FailureType::JobFailed,
            message: "x".into(),
            external_execution_id: None,
        };
        assert_eq!(failed.label(), "JobFailed");
    }

    #[tokio::test]
    async fn a_second_answer_is_recognised_as_already_answered() {
        let rule = mock!(Client::put_job_success_result).then_error(|| {
            PutJobSuccessResultError::InvalidJobStateException(
                InvalidJobStateException::builder().message("job is not in progress").build(),
            )
        });
        let client = mock_client!(aws_sdk_codepipeline, RuleMode::MatchAny, [&rule]);
        let answer = JobAnswer::Success(Success::default());
        assert_eq!(
            answer_job(&client, "job-1", &answer, Deadline::after(std::time::Duration::from_secs(10))).await.unwrap(),
            Answered::Already
        );
    }
}

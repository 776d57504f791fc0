use aws_lambda_events::event::codepipeline_job::CodePipelineJobEvent;
use crossdeploy_protocol::{ArtifactLocation, PipelineContext};
use std::collections::BTreeMap;

/// How a job reached crossdeploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobSource {
    /// The `CodePipeline.job` event of an Invoke action.
    Invoke,
    /// PollForJobs for a custom action of `provider`; the nonce acknowledges it.
    Poll { nonce: String, provider: String },
    /// A deployment the crossdeploy command line runs, outside CodePipeline: its configuration
    /// is an Invoke action's `UserParameters`, and its answer is recorded, never sent.
    Local,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputArtifact {
    pub name: Option<String>,
    pub location: ArtifactLocation,
}

/// One CodePipeline job. Holds no credential: the event's artifact credentials are dropped on
/// parsing (the updaters read the artifact with their own role).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: String,
    pub account_id: Option<String>,
    pub source: JobSource,
    /// The action's configuration: for an Invoke action `FunctionName` and `UserParameters`;
    /// for a custom action its configuration properties.
    pub configuration: BTreeMap<String, String>,
    pub input_artifacts: Vec<InputArtifact>,
    pub continuation_token: Option<String>,
    pub pipeline: PipelineContext,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JobError {
    /// Nothing in the event names a job: there is nothing to answer.
    #[error("the event is not a CodePipeline job (no `CodePipeline.job.id`)")]
    NotAJob,
    /// A job id is there but the rest is not a job CodePipeline would send: answer it as failed.
    #[error("the CodePipeline job {job_id} is malformed: {problem}")]
    Malformed { job_id: String, problem: String },
}

impl Job {
    /// Reads the `CodePipeline.job` event an Invoke action sends.
    pub fn from_invoke_event(event: &serde_json::Value) -> Result<Job, JobError> {
        let job_id = event
            .get("CodePipeline.job")
            .and_then(|j| j.get("id"))
            .and_then(|id| id.as_str())
            .filter(|id| !id.is_empty())
            .ok_or(JobError::NotAJob)?
            .to_owned();
        let malformed = |problem: String| JobError::Malformed { job_id: job_id.clone(), problem };
        let parsed: CodePipelineJobEvent = serde::Deserialize::deserialize(event)
            .map_err(|e: serde_json::Error| malformed(describe_serde_error(&e)))?;
        let job = parsed.code_pipeline_job;
        let data = job.data;

        let mut configuration = BTreeMap::new();
        let cfg = data.action_configuration.configuration;
        if let Some(f) = cfg.function_name {
            configuration.insert("FunctionName".to_owned(), f);
        }
        if let Some(u) = cfg.user_parameters {
            configuration.insert("UserParameters".to_owned(), u);
        }

        let mut input_artifacts = Vec::new();
        for (i, a) in data.input_artifacts.into_iter().enumerate() {
            let s3 = a.location.s3_location;
            match (s3.bucket_name, s3.object_key) {
                (Some(bucket), Some(key)) if !bucket.is_empty() && !key.is_empty() => {
                    input_artifacts.push(InputArtifact { name: a.name, location: ArtifactLocation { bucket, key } })
                }
                _ => return Err(malformed(format!("input artifact {i} has no S3 bucket name or object key"))),
            }
        }

        Ok(Job {
            pipeline: PipelineContext { job_id: job_id.clone(), ..PipelineContext::default() },
            id: job_id,
            account_id: job.account_id,
            source: JobSource::Invoke,
            configuration,
            input_artifacts,
            continuation_token: data.continuation_token.filter(|t| !t.is_empty()),
        })
    }
}

impl Job {
    /// A job PollForJobs handed out for the custom action `provider`.
    pub fn from_polled(job: &aws_sdk_codepipeline::types::Job, provider: &str) -> Result<Job, JobError> {
        let job_id = job.id().filter(|i| !i.is_empty()).ok_or(JobError::NotAJob)?.to_owned();
        let malformed = |problem: &str| JobError::Malformed { job_id: job_id.clone(), problem: problem.to_owned() };
        let nonce = job.nonce().ok_or_else(|| malformed("no nonce to acknowledge it with"))?.to_owned();
        let data = job.data().ok_or_else(|| malformed("no job data"))?;
        let configuration: BTreeMap<String, String> = data
            .action_configuration()
            .and_then(|c| c.configuration())
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let mut input_artifacts = Vec::new();
        for (i, a) in data.input_artifacts().iter().enumerate() {
            let s3 = a.location().and_then(|l| l.s3_location());
            match (s3.map(|l| l.bucket_name()), s3.map(|l| l.object_key())) {
                (Some(bucket), Some(key)) if !bucket.is_empty() && !key.is_empty() => {
                    input_artifacts.push(InputArtifact {
                        name: a.name().map(str::to_owned),
                        location: ArtifactLocation { bucket: bucket.to_owned(), key: key.to_owned() },
                    })
                }
                _ => return Err(malformed(&format!("input artifact {i} has no S3 bucket name or object key"))),
            }
        }
        let ctx = data.pipeline_context();
        Ok(Job {
            pipeline: PipelineContext {
                job_id: job_id.clone(),
                pipeline_name: ctx.and_then(|c| c.pipeline_name()).map(str::to_owned),
                execution_id: ctx.and_then(|c| c.pipeline_execution_id()).map(str::to_owned),
                stage: ctx.and_then(|c| c.stage()).and_then(|s| s.name()).map(str::to_owned),
                action: ctx.and_then(|c| c.action()).and_then(|a| a.name()).map(str::to_owned),
            },
            id: job_id,
            account_id: job.account_id().map(str::to_owned),
            source: JobSource::Poll { nonce, provider: provider.to_owned() },
            configuration,
            input_artifacts,
            continuation_token: data.continuation_token().filter(|t| !t.is_empty()).map(str::to_owned),
        })
    }
}

impl Job {
    /// A custom action's job as `GetJobDetails` gives it, with the nonce PollForJobs handed out:
    /// how a retried run takes up a job it polled before it died.
    pub fn from_details(
        details: &aws_sdk_codepipeline::types::JobDetails,
        provider: &str,
        nonce: &str,
    ) -> Result<Job, JobError> {
        let job = aws_sdk_codepipeline::types::Job::builder()
            .set_id(details.id().map(str::to_owned))
            .set_data(details.data().cloned())
            .set_account_id(details.account_id().map(str::to_owned))
            .nonce(nonce)
            .build();
        Job::from_polled(&job, provider)
    }
}

/// The part of a serde error that is safe to repeat: which field is missing, or only that the
/// shape is wrong (serde's "invalid type" messages can quote a value, which may be a credential).
fn describe_serde_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.find("missing field") {
        Some(start) => {
            let field = &text[start..];
            field.split(" at line").next().unwrap_or(field).to_owned()
        }
        None => "a field has the wrong type or shape".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn invoke_event() -> serde_json::Value {
        json!({
            "CodePipeline.job": {
                "id": "11111111-abcd-1111-abcd-111111abcdef",
                "accountId": "111111111111",
                "data": {
                    "actionConfiguration": {"configuration": {
                        "FunctionName": "pipeline-job-worker",
                        "UserParameters": "{\"Kind\":\"Lambda\"}"
                    }},
                    "inputArtifacts": [{
                        "location": {"s3Location": {"bucketName": "artifacts", "objectKey": "orders/BuildOutp/abc.zip"}, "type": "S3"},
                        "revision": null,
                        "name": "BuildOutput"
                    }],
                    "outputArtifacts": [],
                    "artifactCredentials": {
                        "secretAccessKey": "SECRET-artifact-key",
                        "sessionToken": "TOKEN-artifact",
                        "accessKeyId": "ASIAARTIFACT"
                    },
                    "continuationToken": "tok-1"
                }
            }
        })
    }

    #[test]
    fn an_invoke_event_becomes_a_job_without_its_credentials() {
        let job = Job::from_invoke_event(&invoke_event()).unwrap();
        assert_eq!(job.id, "11111111-abcd-1111-abcd-111111abcdef");
        assert_eq!(job.source, JobSource::Invoke);
        assert_eq!(job.configuration["UserParameters"], "{\"Kind\":\"Lambda\"}");
        assert_eq!(job.input_artifacts[0].location.to_string(), "s3://artifacts/orders/BuildOutp/abc.zip");
        assert_eq!(job.continuation_token.as_deref(), Some("tok-1"));
        let shown = format!("{job:?}");
        assert!(!shown.contains("SECRET") && !shown.contains("TOKEN-artifact"), "{shown}");
    }

    #[test]
    fn an_event_with_no_job_id_is_not_a_job() {
        for e in [
            json!({}),
            json!({"detail-type": "Scheduled Event"}),
            json!({"CodePipeline.job": {"id": ""}}),
            json!("text"),
        ] {
            assert_eq!(Job::from_invoke_event(&e), Err(JobError::NotAJob));
        }
    }

    #[test]
    fn a_job_with_malformed_data_is_answerable_and_names_the_field() {
        let mut e = invoke_event();
        e["CodePipeline.job"]["data"].as_object_mut().unwrap().remove("inputArtifacts");
        let err = Job::from_invoke_event(&e).unwrap_err();
        assert!(matches!(&err, JobError::Malformed { job_id, .. } if job_id == "11111111-abcd-1111-abcd-111111abcdef"));
        assert!(err.to_string().contains("missing field `inputArtifacts`"), "{err}");

        let mut e = invoke_event();
        e["CodePipeline.job"]["data"]["artifactCredentials"]["secretAccessKey"] = json!(["SECRET-in-the-wrong-shape"]);
        let err = Job::from_invoke_event(&e).unwrap_err();
        assert!(!err.to_string().contains("SECRET"), "{err}");
    }
}

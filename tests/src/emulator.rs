//! crossdeploy's CodePipeline job API emulator: moto has no job API (every call answers HTTP 500),
//! so this speaks the real awsJson1.1 protocol (`X-Amz-Target: CodePipeline_20150709.<Op>`) to
//! the real SDK client.
//!
//! Implemented: PutJobSuccessResult, PutJobFailureResult (a second answer for a job gets
//! `InvalidJobStateException`, an unknown job `JobNotFoundException`), GetJobDetails, and
//! continuation for Invoke actions: a success with a continuation token queues a new job carrying
//! it, which a test takes with [`Emulator::take_continuations`] and hands to the worker, as
//! CodePipeline would invoke it again.

use crate::{unique, Result};
use bytes::Bytes;
use crossdeploy_protocol::ArtifactLocation;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

const TARGET_PREFIX: &str = "CodePipeline_20150709.";
/// The account the emulated pipelines live in (the shared services account).
pub const PIPELINE_ACCOUNT: &str = "111111111111";

/// A job to create, as a pipeline's Invoke action would start it.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub pipeline_name: String,
    pub stage: String,
    pub action: String,
    pub user_parameters: String,
    pub artifact: ArtifactLocation,
}

/// One answer the emulator received.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Success {
        job_id: String,
        summary: Option<String>,
        percent_complete: Option<i64>,
        external_execution_id: Option<String>,
        output_variables: BTreeMap<String, String>,
        continuation_token: Option<String>,
    },
    Failure {
        job_id: String,
        failure_type: String,
        message: String,
    },
}

impl Answer {
    pub fn job_id(&self) -> &str {
        match self {
            Answer::Success { job_id, .. } | Answer::Failure { job_id, .. } => job_id,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    InProgress,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone)]
struct EmulatedJob {
    job: NewJob,
    execution_id: String,
    status: Status,
    continuation_token: Option<String>,
}

#[derive(Default)]
struct State {
    jobs: BTreeMap<String, EmulatedJob>,
    answers: Vec<Answer>,
    continuations: VecDeque<String>,
    calls: BTreeMap<String, usize>,
}

/// The emulator, serving on a free port of 127.0.0.1 until dropped.
pub struct Emulator {
    pub endpoint: String,
    state: Arc<Mutex<State>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Emulator {
    pub async fn start() -> Result<Emulator> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, std::convert::Infallible>(serve(req, &state).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Emulator { endpoint, state, server })
    }

    /// Creates an in-progress job, as CodePipeline does when it starts an Invoke action, and
    /// returns the `CodePipeline.job` event it would invoke the function with.
    pub fn start_invoke_job(&self, job: NewJob) -> Value {
        let id = job_id();
        let execution_id = job_id();
        let emulated = EmulatedJob { job, execution_id, status: Status::InProgress, continuation_token: None };
        let event = invoke_event(&id, &emulated);
        self.lock().jobs.insert(id, emulated);
        event
    }

    /// The events CodePipeline would invoke the function with to continue jobs answered with a
    /// continuation token, oldest first (each a new job carrying the token).
    pub fn take_continuations(&self) -> Vec<Value> {
        let mut state = self.lock();
        let ids: Vec<String> = state.continuations.drain(..).collect();
        ids.iter().filter_map(|id| state.jobs.get(id).map(|j| invoke_event(id, j))).collect()
    }

    /// Every answer received, in order.
    pub fn answers(&self) -> Vec<Answer> {
        self.lock().answers.clone()
    }

    /// How many calls of an operation the emulator served (answered or refused).
    pub fn calls(&self, operation: &str) -> usize {
        self.lock().calls.get(operation).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A job id shaped as CodePipeline's (a UUID).
fn job_id() -> String {
    use std::hash::BuildHasher;
    let random = std::collections::hash_map::RandomState::new();
    let halves = [0u8, 1].map(|i| random.hash_one((unique(), i, std::time::SystemTime::now())));
    let h = format!("{:016x}{:016x}", halves[0], halves[1]);
    format!("{}-{}-4{}-8{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
}

fn invoke_event(id: &str, j: &EmulatedJob) -> Value {
    json!({
        "CodePipeline.job": {
            "id": id,
            "accountId": PIPELINE_ACCOUNT,
            "data": {
                "actionConfiguration": {"configuration": {
                    "FunctionName": "pipeline-job-worker",
                    "UserParameters": j.job.user_parameters,
                }},
                "inputArtifacts": [{
                    "name": "BuildOutput",
                    "revision": null,
                    "location": {"type": "S3", "s3Location": {"bucketName": j.job.artifact.bucket, "objectKey": j.job.artifact.key}}
                }],
                "outputArtifacts": [],
                // What CodePipeline sends; crossdeploy must never log or use these.
                "artifactCredentials": {
                    "accessKeyId": "ASIAARTIFACTKEYID",
                    "secretAccessKey": "ARTIFACT-SECRET-never-logged",
                    "sessionToken": "ARTIFACT-SESSION-TOKEN-never-logged"
                },
                "continuationToken": j.continuation_token,
            }
        }
    })
}

fn respond(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("application/x-amz-json-1.1"));
    resp
}

fn error(code: &str, message: &str) -> Response<Full<Bytes>> {
    let mut resp = respond(StatusCode::BAD_REQUEST, json!({"__type": code, "message": message}));
    if let Ok(v) = hyper::header::HeaderValue::from_str(code) {
        resp.headers_mut().insert("x-amzn-errortype", v);
    }
    resp
}

async fn serve(req: Request<Incoming>, state: &Mutex<State>) -> Response<Full<Bytes>> {
    let op = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix(TARGET_PREFIX))
        .map(str::to_owned);
    let json_content = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/x-amz-json-1.1"));
    let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
        return error("SerializationException", "could not read the request body");
    };
    let Some(op) = op else {
        return error("UnknownOperationException", "missing or foreign X-Amz-Target");
    };
    if !json_content {
        return error("SerializationException", "expected Content-Type application/x-amz-json-1.1");
    }
    let Ok(input) = serde_json::from_slice::<Value>(&body) else {
        return error("SerializationException", "the body is not JSON");
    };
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    *state.calls.entry(op.clone()).or_default() += 1;
    let Some(job_id) = input["jobId"].as_str().map(str::to_owned) else {
        return error(
            "ValidationException",
            "1 validation error detected: Value null at 'jobId' failed to satisfy constraint: Member must not be null",
        );
    };
    let Some(job) = state.jobs.get(&job_id).cloned() else {
        return error(
            "JobNotFoundException",
            &format!("The job was specified in an invalid format or cannot be found: {job_id}"),
        );
    };
    match op.as_str() {
        "GetJobDetails" => respond(
            StatusCode::OK,
            json!({"jobDetails": {
                "id": job_id,
                "accountId": PIPELINE_ACCOUNT,
                "data": {
                    "pipelineContext": {
                        "pipelineName": job.job.pipeline_name,
                        "stage": {"name": job.job.stage},
                        "action": {"name": job.job.action, "actionExecutionId": format!("{job_id}-action")},
                        "pipelineExecutionId": job.execution_id,
                    },
                    "continuationToken": job.continuation_token,
                }
            }}),
        ),
        "PutJobSuccessResult" | "PutJobFailureResult" if job.status != Status::InProgress => {
            error("InvalidJobStateException", &format!("Job {job_id} is not in progress; it was answered already"))
        }
        "PutJobSuccessResult" => {
            if let Some(t) = input["continuationToken"].as_str() {
                if t.len() > 2048 {
                    return error(
                        "ValidationException",
                        "continuationToken: Member must have length less than or equal to 2048",
                    );
                }
            }
            let details = &input["executionDetails"];
            let outputs: BTreeMap<String, String> = input["outputVariables"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
                .unwrap_or_default();
            let continuation_token = input["continuationToken"].as_str().map(str::to_owned);
            state.answers.push(Answer::Success {
                job_id: job_id.clone(),
                summary: details["summary"].as_str().map(str::to_owned),
                percent_complete: details["percentComplete"].as_i64(),
                external_execution_id: details["externalExecutionId"].as_str().map(str::to_owned),
                output_variables: outputs,
                continuation_token: continuation_token.clone(),
            });
            if let Some(j) = state.jobs.get_mut(&job_id) {
                j.status = Status::Succeeded;
            }
            if let Some(token) = continuation_token {
                let next = job_id_for_continuation(&mut state, &job, token);
                state.continuations.push_back(next);
            }
            respond(StatusCode::OK, json!({}))
        }
        "PutJobFailureResult" => {
            let details = &input["failureDetails"];
            let (Some(kind), Some(message)) = (details["type"].as_str(), details["message"].as_str()) else {
                return error("ValidationException", "failureDetails.type and failureDetails.message are required");
            };
            if !matches!(
                kind,
                "JobFailed"
                    | "ConfigurationError"
                    | "PermissionError"
                    | "RevisionOutOfSync"
                    | "RevisionUnavailable"
                    | "SystemUnavailable"
            ) {
                return error("ValidationException", &format!("failureDetails.type `{kind}` is not a FailureType"));
            }
            state.answers.push(Answer::Failure {
                job_id: job_id.clone(),
                failure_type: kind.to_owned(),
                message: message.to_owned(),
            });
            if let Some(j) = state.jobs.get_mut(&job_id) {
                j.status = Status::Failed;
            }
            respond(StatusCode::OK, json!({}))
        }
        other => error("UnknownOperationException", &format!("the emulator does not implement {other}")),
    }
}

fn job_id_for_continuation(state: &mut State, job: &EmulatedJob, token: String) -> String {
    let id = job_id();
    state.jobs.insert(
        id.clone(),
        EmulatedJob {
            job: job.job.clone(),
            execution_id: job.execution_id.clone(),
            status: Status::InProgress,
            continuation_token: Some(token),
        },
    );
    id
}

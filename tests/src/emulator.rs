//! crossdeploy's CodePipeline job API emulator: moto has no job API (every call answers HTTP 500),
//! so this speaks the real awsJson1.1 protocol (`X-Amz-Target: CodePipeline_20150709.<Op>`) to
//! the real SDK client.
//!
//! Implemented: PutJobSuccessResult, PutJobFailureResult (a second answer for a job gets
//! `InvalidJobStateException`, an unknown job `JobNotFoundException`), GetJobDetails,
//! CreateCustomActionType, PollForJobs (by action type, up to the batch size; each job handed
//! out once, with a fresh nonce), AcknowledgeJob (the nonce checked), and continuation: a success
//! with a continuation token queues a new job for the same action carrying it — a custom action's
//! for the next PollForJobs, an Invoke action's for [`Emulator::take_continuations`], whose events
//! a test hands to the worker as CodePipeline would invoke it again.
//!
//! As strict as CodePipeline documents, never kinder, and where it documents nothing, the
//! harsher of the plausible answers:
//! - a job not answered within its timeout (20 minutes, CodePipeline's reply timer) times out:
//!   an answer after that is refused with `InvalidJobStateException`;
//! - a job PollForJobs handed out and nobody acknowledged is never handed out again: it times
//!   out (undocumented; CodePipeline might queue it again, which would be kinder);
//! - an AcknowledgeJob with a nonce already used gets `InvalidNonceException` (undocumented; the
//!   CLI's example shows `InProgress`);
//! - PutJobSuccessResult is validated as its reference says: output variables only without a
//!   continuation token, at most 122,880 bytes of them, a token of 1 to 2,048 characters, a
//!   summary of at most 2,048, an external execution id of at most 1,500, a percentage of 0 to
//!   100; a failure message of at most 5,000 characters.

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
use std::time::{Duration, Instant};

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
    /// The pipeline execution it belongs to (`None`: a new one). Actions of one stage of one
    /// run share it.
    pub execution_id: Option<String>,
}

/// How strict the emulator's clocks are.
#[derive(Debug, Clone, Copy)]
pub struct EmulatorSettings {
    /// A job in progress not answered within this times out (CodePipeline: 20 minutes).
    pub job_timeout: Duration,
    /// A job handed out by PollForJobs and not acknowledged within this times out.
    pub ack_timeout: Duration,
    /// Whether GetJobDetails serves an Invoke action's job. AWS documents GetJobDetails "for
    /// custom actions only" and says nothing of Invoke jobs: tests that depend on the answer
    /// run with both.
    pub invoke_job_details: bool,
}

impl Default for EmulatorSettings {
    fn default() -> Self {
        Self {
            job_timeout: Duration::from_secs(20 * 60),
            ack_timeout: Duration::from_secs(60),
            invoke_job_details: true,
        }
    }
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

/// A job's status, as CodePipeline names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Queued,
    Dispatched,
    InProgress,
    Succeeded,
    Failed,
    /// Not answered (or, handed out, not acknowledged) in time.
    TimedOut,
}

/// A custom action's job to create, as CodePipeline does when a pipeline reaches the action.
#[derive(Debug, Clone)]
pub struct NewCustomJob {
    pub provider: String,
    pub pipeline_name: String,
    pub stage: String,
    pub action: String,
    pub configuration: BTreeMap<String, String>,
    pub artifact: ArtifactLocation,
    /// The pipeline execution it belongs to (`None`: a new one).
    pub execution_id: Option<String>,
}

#[derive(Debug, Clone)]
enum Kind {
    Invoke { user_parameters: String },
    Custom { provider: String, configuration: BTreeMap<String, String> },
}

#[derive(Debug, Clone)]
struct EmulatedJob {
    kind: Kind,
    pipeline_name: String,
    stage: String,
    action: String,
    artifact: ArtifactLocation,
    execution_id: String,
    status: Status,
    /// When the job reached its status: its timeouts count from here.
    since: Instant,
    nonce: Option<String>,
    /// The nonce was used to acknowledge it.
    acknowledged: bool,
    continuation_token: Option<String>,
    /// The job its continuation token created, once answered with one.
    continued_by: Option<String>,
}

#[derive(Default)]
struct State {
    settings: EmulatorSettings,
    jobs: BTreeMap<String, EmulatedJob>,
    /// Answers refused because their job had timed out, by job id.
    late: Vec<String>,
    /// Jobs that were sent a second answer different from their first (refused).
    conflicting: Vec<String>,
    /// Queued custom jobs, oldest first.
    queue: VecDeque<String>,
    action_types: BTreeMap<String, Value>,
    answers: Vec<Answer>,
    /// When each answer arrived (job id, time), in order.
    answered_at: Vec<(String, Instant)>,
    continuations: VecDeque<String>,
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
        Self::start_with(EmulatorSettings::default()).await
    }

    pub async fn start_with(settings: EmulatorSettings) -> Result<Emulator> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(Mutex::new(State { settings, ..State::default() }));
        let shared = state.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    // Out of descriptors, say: pause rather than spin.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
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
        let emulated = EmulatedJob {
            kind: Kind::Invoke { user_parameters: job.user_parameters },
            pipeline_name: job.pipeline_name,
            stage: job.stage,
            action: job.action,
            artifact: job.artifact,
            execution_id: job.execution_id.unwrap_or_else(job_id),
            status: Status::InProgress,
            since: Instant::now(),
            nonce: None,
            acknowledged: false,
            continuation_token: None,
            continued_by: None,
        };
        let event = invoke_event(&id, &emulated);
        self.lock().jobs.insert(id, emulated);
        event
    }

    /// Queues a custom action's job for PollForJobs, as CodePipeline does when a pipeline run
    /// reaches the action; returns its id. The action type need not exist (a job of a type no
    /// worker polls for stays queued).
    pub fn start_custom_job(&self, job: NewCustomJob) -> String {
        let id = job_id();
        let emulated = EmulatedJob {
            kind: Kind::Custom { provider: job.provider, configuration: job.configuration },
            pipeline_name: job.pipeline_name,
            stage: job.stage,
            action: job.action,
            artifact: job.artifact,
            execution_id: job.execution_id.unwrap_or_else(job_id),
            status: Status::Queued,
            since: Instant::now(),
            nonce: None,
            acknowledged: false,
            continuation_token: None,
            continued_by: None,
        };
        let mut state = self.lock();
        state.jobs.insert(id.clone(), emulated);
        state.queue.push_back(id.clone());
        id
    }

    /// The continuation token a job carries.
    pub fn continuation_token_of(&self, job_id: &str) -> Option<String> {
        self.lock().jobs.get(job_id).and_then(|j| j.continuation_token.clone())
    }

    /// A job's status.
    pub fn status(&self, job_id: &str) -> Option<Status> {
        self.lock().jobs.get(job_id).map(|j| j.status)
    }

    /// A job's pipeline execution.
    pub fn execution_of(&self, job_id: &str) -> Option<String> {
        self.lock().jobs.get(job_id).map(|j| j.execution_id.clone())
    }

    /// Every job, with its status.
    pub fn statuses(&self) -> BTreeMap<String, Status> {
        self.lock().jobs.iter().map(|(id, j)| (id.clone(), j.status)).collect()
    }

    /// Answers refused because their job had timed out, by job id.
    pub fn late_answers(&self) -> Vec<String> {
        self.lock().late.clone()
    }

    /// Jobs that were sent a second, different answer (refused, as CodePipeline refuses it).
    pub fn conflicting_answers(&self) -> Vec<String> {
        self.lock().conflicting.clone()
    }

    /// The answers a job got (exactly one, if all is well).
    pub fn answers_of(&self, job_id: &str) -> Vec<Answer> {
        self.lock().answers.iter().filter(|a| a.job_id() == job_id).cloned().collect()
    }

    /// The job a continuation answer of `job_id` created, if any.
    pub fn next_of(&self, job_id: &str) -> Option<String> {
        self.lock().jobs.get(job_id).and_then(|j| j.continued_by.clone())
    }

    /// The `CodePipeline.job` event CodePipeline invokes an Invoke action's function with for
    /// `job_id` (a continuation job's too).
    pub fn invoke_event_of(&self, job_id: &str) -> Option<Value> {
        self.lock().jobs.get(job_id).map(|j| invoke_event(job_id, j))
    }

    /// How many custom jobs are queued, of any action type.
    pub fn queued(&self) -> usize {
        self.lock().queue.len()
    }

    /// The action types created, by `Owner/Category/Provider/Version`.
    pub fn action_types(&self) -> BTreeMap<String, Value> {
        self.lock().action_types.clone()
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

    /// When each answer arrived: (job id, time), in order.
    pub fn answer_times(&self) -> Vec<(String, Instant)> {
        self.lock().answered_at.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.expire();
        state
    }
}

impl State {
    /// Times out the jobs whose clocks ran out, as CodePipeline does.
    fn expire(&mut self) {
        let (answer_in, acknowledge_in) = (self.settings.job_timeout, self.settings.ack_timeout);
        for job in self.jobs.values_mut() {
            let limit = match job.status {
                Status::InProgress => answer_in,
                Status::Dispatched => acknowledge_in,
                _ => continue,
            };
            if job.since.elapsed() > limit {
                job.status = Status::TimedOut;
                job.since = Instant::now();
            }
        }
    }
}

/// A job id shaped as CodePipeline's (a UUID).
fn job_id() -> String {
    new_id()
}

/// A new id shaped as a UUID (job ids, request ids).
pub(crate) fn new_id() -> String {
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
                    "UserParameters": match &j.kind { Kind::Invoke { user_parameters } => user_parameters.clone(), Kind::Custom { .. } => String::new() },
                }},
                "inputArtifacts": [{
                    "name": "BuildOutput",
                    "revision": null,
                    "location": {"type": "S3", "s3Location": {"bucketName": j.artifact.bucket, "objectKey": j.artifact.key}}
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

/// A custom job as PollForJobs and GetJobDetails give it.
fn job_data(id: &str, j: &EmulatedJob) -> Value {
    let (provider, configuration) = match &j.kind {
        Kind::Custom { provider, configuration } => (provider.clone(), json!(configuration)),
        Kind::Invoke { user_parameters } => {
            ("Lambda".to_owned(), json!({"FunctionName": "pipeline-job-worker", "UserParameters": user_parameters}))
        }
    };
    let owner = if matches!(j.kind, Kind::Custom { .. }) { "Custom" } else { "AWS" };
    json!({
        "actionTypeId": {"category": if owner == "AWS" { "Invoke" } else { "Deploy" }, "owner": owner, "provider": provider, "version": "1"},
        "actionConfiguration": {"configuration": configuration},
        "pipelineContext": {
            "pipelineName": j.pipeline_name,
            "stage": {"name": j.stage},
            "action": {"name": j.action, "actionExecutionId": format!("{id}-action")},
            "pipelineArn": format!("arn:aws:codepipeline:us-east-1:{PIPELINE_ACCOUNT}:{}", j.pipeline_name),
            "pipelineExecutionId": j.execution_id,
        },
        "inputArtifacts": [{
            "name": "BuildOutput",
            "location": {"type": "S3", "s3Location": {"bucketName": j.artifact.bucket, "objectKey": j.artifact.key}}
        }],
        "outputArtifacts": [],
        "artifactCredentials": {
            "accessKeyId": "ASIAARTIFACTKEYID",
            "secretAccessKey": "ARTIFACT-SECRET-never-logged",
            "sessionToken": "ARTIFACT-SESSION-TOKEN-never-logged"
        },
        "continuationToken": j.continuation_token,
    })
}

fn action_type_key(id: &Value) -> Option<String> {
    Some(format!(
        "{}/{}/{}/{}",
        id["owner"].as_str().unwrap_or("Custom"),
        id["category"].as_str()?,
        id["provider"].as_str()?,
        id["version"].as_str()?
    ))
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
    state.expire();
    match op.as_str() {
        "CreateCustomActionType" => {
            let id = json!({"category": input["category"], "owner": "Custom", "provider": input["provider"], "version": input["version"]});
            let Some(key) = action_type_key(&id) else {
                return error("ValidationException", "category, provider and version are required");
            };
            let (Some(_), Some(_)) =
                (input["inputArtifactDetails"].as_object(), input["outputArtifactDetails"].as_object())
            else {
                return error("ValidationException", "inputArtifactDetails and outputArtifactDetails are required");
            };
            // CodePipeline's quotas: at most 10 configuration properties per custom action type,
            // each description at most 160 characters.
            let properties = input["configurationProperties"].as_array().map(Vec::len).unwrap_or(0);
            if properties > 10 {
                return error(
                    "ValidationException",
                    &format!("configurationProperties has {properties} members; at most 10 are allowed"),
                );
            }
            if let Some(long) = input["configurationProperties"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["description"].as_str().is_some_and(|d| d.chars().count() > 160))
            {
                return error(
                    "ValidationException",
                    &format!(
                        "the description of configuration property {} is longer than 160 characters",
                        long["name"]
                    ),
                );
            }
            let action_type = json!({
                "id": id,
                "settings": input["settings"],
                "actionConfigurationProperties": input["configurationProperties"],
                "inputArtifactDetails": input["inputArtifactDetails"],
                "outputArtifactDetails": input["outputArtifactDetails"],
            });
            state.action_types.insert(key, action_type.clone());
            return respond(StatusCode::OK, json!({"actionType": action_type, "tags": input["tags"]}));
        }
        "PollForJobs" => {
            let Some(key) = action_type_key(&input["actionTypeId"]) else {
                return error("ValidationException", "actionTypeId needs category, owner, provider and version");
            };
            if !state.action_types.contains_key(&key) {
                return error(
                    "ActionTypeNotFoundException",
                    &format!("The specified action type cannot be found: {key}"),
                );
            }
            let provider = input["actionTypeId"]["provider"].as_str().unwrap_or_default().to_owned();
            let max = input["maxBatchSize"].as_u64().unwrap_or(1).clamp(1, 100) as usize;
            let mut handed = Vec::new();
            let queued: Vec<String> = state.queue.iter().cloned().collect();
            for id in queued {
                if handed.len() >= max {
                    break;
                }
                let Some(job) = state.jobs.get_mut(&id) else { continue };
                if !matches!(&job.kind, Kind::Custom { provider: p, .. } if *p == provider) {
                    continue;
                }
                let nonce = job_id();
                job.status = Status::Dispatched;
                job.since = Instant::now();
                job.nonce = Some(nonce.clone());
                handed
                    .push(json!({"id": id, "data": job_data(&id, job), "nonce": nonce, "accountId": PIPELINE_ACCOUNT}));
                state.queue.retain(|q| *q != id);
            }
            return respond(StatusCode::OK, json!({"jobs": handed}));
        }
        _ => {}
    }
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
        "GetJobDetails" if matches!(job.kind, Kind::Invoke { .. }) && !state.settings.invoke_job_details => error(
            "JobNotFoundException",
            &format!("The job was specified in an invalid format or cannot be found: {job_id}"),
        ),
        "GetJobDetails" => respond(
            StatusCode::OK,
            json!({"jobDetails": {"id": job_id, "accountId": PIPELINE_ACCOUNT, "data": job_data(&job_id, &job)}}),
        ),
        "AcknowledgeJob" => {
            // A nonce acknowledges once: a second AcknowledgeJob with it is refused.
            if input["nonce"].as_str() != job.nonce.as_deref() || job.nonce.is_none() || job.acknowledged {
                return error(
                    "InvalidNonceException",
                    &format!("The nonce was specified in an invalid format for job {job_id}"),
                );
            }
            if let Some(j) = state.jobs.get_mut(&job_id) {
                j.acknowledged = true;
                if j.status == Status::Dispatched {
                    j.status = Status::InProgress;
                    j.since = Instant::now();
                }
            }
            let status = match state.jobs.get(&job_id).map(|j| j.status) {
                Some(Status::InProgress) => "InProgress",
                Some(Status::Succeeded) => "Succeeded",
                Some(Status::Failed) => "Failed",
                Some(Status::Dispatched) => "Dispatched",
                Some(Status::TimedOut) => "TimedOut",
                _ => "Queued",
            };
            respond(StatusCode::OK, json!({"status": status}))
        }
        "PutJobSuccessResult" | "PutJobFailureResult" if job.status != Status::InProgress => {
            let first = state.answers.iter().find(|a| a.job_id() == job_id);
            let same = match (first, op.as_str()) {
                (Some(Answer::Success { .. }), "PutJobSuccessResult") => {
                    first.and_then(|a| {
                        if let Answer::Success { continuation_token, .. } = a {
                            continuation_token.clone()
                        } else {
                            None
                        }
                    }) == input["continuationToken"].as_str().map(str::to_owned)
                }
                (Some(Answer::Failure { message, .. }), "PutJobFailureResult") => {
                    input["failureDetails"]["message"].as_str() == Some(message.as_str())
                }
                _ => job.status == Status::TimedOut,
            };
            if !same {
                state.conflicting.push(job_id.clone());
            }
            if job.status == Status::TimedOut {
                state.late.push(job_id.clone());
                return error(
                    "InvalidJobStateException",
                    &format!("Job {job_id} timed out; it can no longer be answered"),
                );
            }
            error("InvalidJobStateException", &format!("Job {job_id} is not in progress; it was answered already"))
        }
        "PutJobSuccessResult" => {
            let details = &input["executionDetails"];
            if let Some(problem) = invalid_success(&input) {
                return error("ValidationException", &problem);
            }
            let outputs_size: usize = input["outputVariables"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| k.len() + v.as_str().map(str::len).unwrap_or(0)).sum())
                .unwrap_or(0);
            if outputs_size > 122_880 {
                return error(
                    "OutputVariablesSizeExceededException",
                    "The output variables of the action exceed 122880 bytes",
                );
            }
            let outputs: BTreeMap<String, String> = input["outputVariables"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
                .unwrap_or_default();
            let continuation_token = input["continuationToken"].as_str().map(str::to_owned);
            state.answered_at.push((job_id.clone(), Instant::now()));
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
                if let Some(j) = state.jobs.get_mut(&job_id) {
                    j.continued_by = Some(next.clone());
                }
                match job.kind {
                    Kind::Invoke { .. } => state.continuations.push_back(next),
                    Kind::Custom { .. } => state.queue.push_back(next),
                }
            }
            respond(StatusCode::OK, json!({}))
        }
        "PutJobFailureResult" => {
            let details = &input["failureDetails"];
            let (Some(kind), Some(message)) = (details["type"].as_str(), details["message"].as_str()) else {
                return error("ValidationException", "failureDetails.type and failureDetails.message are required");
            };
            if message.chars().count() > 5000
                || details["externalExecutionId"].as_str().is_some_and(|e| e.chars().count() > 1500)
            {
                return error(
                    "ValidationException",
                    "failureDetails: message must be at most 5000 characters, externalExecutionId at most 1500",
                );
            }
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
            state.answered_at.push((job_id.clone(), Instant::now()));
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
    let queued = matches!(job.kind, Kind::Custom { .. });
    state.jobs.insert(
        id.clone(),
        EmulatedJob {
            status: if queued { Status::Queued } else { Status::InProgress },
            since: Instant::now(),
            nonce: None,
            acknowledged: false,
            continuation_token: Some(token),
            continued_by: None,
            ..job.clone()
        },
    );
    id
}

/// What PutJobSuccessResult's reference refuses in a request, if anything.
fn invalid_success(input: &Value) -> Option<String> {
    let details = &input["executionDetails"];
    let token = input["continuationToken"].as_str();
    if let Some(t) = token {
        if t.is_empty() || t.len() > 2048 {
            return Some("continuationToken: Member must have length between 1 and 2048".to_owned());
        }
    }
    if token.is_some() && input["outputVariables"].as_object().is_some_and(|m| !m.is_empty()) {
        return Some(
            "outputVariables can be included only when there is no continuation token on the request".to_owned(),
        );
    }
    if details["summary"].as_str().is_some_and(|s| s.chars().count() > 2048) {
        return Some("executionDetails.summary: Member must have length less than or equal to 2048".to_owned());
    }
    if details["externalExecutionId"].as_str().is_some_and(|e| e.chars().count() > 1500) {
        return Some(
            "executionDetails.externalExecutionId: Member must have length less than or equal to 1500".to_owned(),
        );
    }
    if details["percentComplete"].as_i64().is_some_and(|p| !(0..=100).contains(&p)) {
        return Some("executionDetails.percentComplete: Member must be between 0 and 100".to_owned());
    }
    None
}

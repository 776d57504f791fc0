//! `crossdeploy deploy lambda|ecs`: a deployment run from here, in this process, through the
//! worker's own code (the same job claim, target lease, strategies, alarm gates and ledger record
//! as a pipeline job) with both updaters in process. The job's answer is recorded in the ledger
//! and read back from there; a long deployment goes on through continuation jobs, one after the
//! other, as CodePipeline would send them.

use crate::CliError;
use aws_config::SdkConfig;
use crossdeploy_aws::Deadline;
use crossdeploy_ledger::Ledger;
use crossdeploy_pipeline_job::{InputArtifact, Job, JobAnswer, JobSource};
use crossdeploy_protocol::{ArtifactLocation, Outcome, PipelineContext, UpdaterRequest};
use pipeline_job_worker::{Invoke, InvokeError, Updaters, Worker};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

/// The updaters' names, as the in-process worker knows them.
pub const LAMBDA_UPDATER: &str = "lambda-alias-updater";
pub const ECS_UPDATER: &str = "ecs-taskdef-updater";

/// How long one worker run of a local deployment lasts by default: the deployment reports its
/// progress at the end of each (a continuation), as CodePipeline shows it.
pub const RUN: Duration = Duration::from_secs(90);
/// `CROSSDEPLOY_CLI_RUN_SECONDS`: another length for each run (30 to 900 seconds).
pub const RUN_ENV: &str = "CROSSDEPLOY_CLI_RUN_SECONDS";
/// A deployment goes on through continuation jobs for at most 24 hours, as an Invoke action.
const LONGEST: Duration = Duration::from_secs(24 * 3600);

/// Each run's length: [`RUN_ENV`], else [`RUN`].
pub fn run_length() -> Result<Duration, CliError> {
    match std::env::var(RUN_ENV).ok().filter(|v| !v.trim().is_empty()) {
        None => Ok(RUN),
        Some(v) => {
            v.trim().parse::<u64>().ok().filter(|s| (30..=900).contains(s)).map(Duration::from_secs).ok_or_else(|| {
                CliError::Configuration(format!("{RUN_ENV} is {v:?}: give a whole number of seconds from 30 to 900"))
            })
        }
    }
}

/// Both updaters in this process: the worker's request and the updater's outcome still go
/// through JSON, as over Lambda Invoke.
pub struct InProcessUpdaters {
    pub lambda: lambda_alias_updater::Deps,
    pub ecs: ecs_taskdef_updater::Deps,
    /// Each invocation's time.
    pub budget: Duration,
}

impl InProcessUpdaters {
    /// Both updaters acting with `config`'s credentials, each with its own session cache, as
    /// two functions would have; the allow-list, the ExternalId and the ledger they check
    /// requests against as given.
    pub fn new(
        config: &SdkConfig,
        sessions: impl Fn() -> crossdeploy_credentials::TargetSessions,
        ledger_table: &str,
    ) -> Self {
        let origin = || {
            let ledger = Ledger::new(aws_sdk_dynamodb::Client::new(config), ledger_table);
            crossdeploy_ledger::Origin::new(Some(ledger), config.region().map(|r| r.to_string()).unwrap_or_default())
        };
        Self {
            lambda: lambda_alias_updater::Deps {
                s3: aws_sdk_s3::Client::new(config),
                sessions: sessions(),
                origin: origin(),
            },
            ecs: ecs_taskdef_updater::Deps {
                s3: aws_sdk_s3::Client::new(config),
                sessions: sessions(),
                origin: origin(),
            },
            budget: Duration::from_secs(120),
        }
    }

    /// [`InProcessUpdaters::new`] with the allow-list (`allowed_roles`, as
    /// `CROSSDEPLOY_ALLOWED_TARGET_ROLES` writes it) and the ExternalId given.
    pub fn with_allow_list(config: &SdkConfig, allowed_roles: &str, external_id: &str, ledger_table: &str) -> Self {
        let sessions = || {
            crossdeploy_credentials::TargetSessions::new(
                aws_sdk_sts::Client::new(config),
                config.clone(),
                crossdeploy_credentials::AllowList::parse(allowed_roles),
                Some(external_id.to_owned()),
            )
        };
        Self::new(config, sessions, ledger_table)
    }

    pub fn updaters() -> Updaters {
        Updaters { lambda: Some(LAMBDA_UPDATER.to_owned()), ecs: Some(ECS_UPDATER.to_owned()) }
    }
}

impl Invoke for InProcessUpdaters {
    async fn invoke(&self, function: &str, request: &UpdaterRequest) -> Result<Outcome, InvokeError> {
        let bad = |problem: String| InvokeError::BadAnswer { function: function.to_owned(), problem };
        let event = serde_json::to_value(request).map_err(|e| bad(e.to_string()))?;
        let deadline = Deadline::after(self.budget);
        let outcome = match function {
            LAMBDA_UPDATER => lambda_alias_updater::handle(event, &self.lambda, deadline).await,
            ECS_UPDATER => ecs_taskdef_updater::handle(event, &self.ecs, deadline).await,
            other => {
                return Err(InvokeError::Call {
                    function: other.to_owned(),
                    error: crossdeploy_aws::ErrorInfo {
                        code: Some("ResourceNotFoundException".into()),
                        message: format!("Function not found: {other}"),
                    },
                })
            }
        };
        let json = serde_json::to_vec(&outcome).map_err(|e| bad(e.to_string()))?;
        serde_json::from_slice(&json).map_err(|e| bad(e.to_string()))
    }
}

/// A local deployment, as the command line read it.
#[derive(Debug, Clone)]
pub struct LocalDeployment {
    /// The action's keys, as an Invoke action's `UserParameters` (with `Kind`).
    pub parameters: serde_json::Value,
    /// The input artifact in S3 (uploaded first when given as a file).
    pub artifact: ArtifactLocation,
    /// The name the ledger records as the deployment's pipeline.
    pub pipeline: String,
}

/// How the deployment went, and its last answer.
pub struct Ended {
    pub deployment_id: String,
    pub answer: JobAnswer,
}

/// Runs the deployment to its end: a first job, then each continuation job, every one through
/// the worker's code with `worker` (local: answers are recorded, never sent). `progress` is told
/// each continuation's summary and percentage.
pub async fn run(
    worker: Arc<Worker<InProcessUpdaters>>,
    deployment: &LocalDeployment,
    run: Duration,
    progress: &mut dyn FnMut(&str, Option<u8>),
) -> Result<Ended, CliError> {
    let started = std::time::Instant::now();
    let first_id = format!("local-{}", unique_id());
    let mut job = Job {
        id: first_id.clone(),
        account_id: None,
        source: JobSource::Local,
        configuration: BTreeMap::from([("UserParameters".to_owned(), deployment.parameters.to_string())]),
        input_artifacts: vec![InputArtifact { name: Some("artifact".into()), location: deployment.artifact.clone() }],
        continuation_token: None,
        pipeline: PipelineContext {
            job_id: first_id.clone(),
            pipeline_name: Some(deployment.pipeline.clone()),
            execution_id: Some(first_id.clone()),
            stage: Some("local".into()),
            action: Some("crossdeploy-deploy".into()),
        },
    };
    while started.elapsed() < LONGEST {
        let run_started = std::time::Instant::now();
        let answer = run_job(&worker, &job, run).await?;
        let token = match &answer {
            JobAnswer::Success(s) => s.continuation_token.clone(),
            JobAnswer::Failure { .. } => None,
        };
        let Some(token) = token else { return Ok(Ended { deployment_id: first_id, answer }) };
        if let JobAnswer::Success(s) = &answer {
            progress(&s.summary, s.percent_complete);
        }
        // A run that ended at once (its target busy, waiting for the lease): the next job a
        // little later, as the worker's lease wait expects, not in a tight loop.
        if run_started.elapsed() < PAUSE_UNDER {
            tokio::time::sleep(PAUSE).await;
        }
        // The next job, as CodePipeline sends it: a new id, the same action, the token.
        let next = format!("local-{}", unique_id());
        job.id = next.clone();
        job.pipeline.job_id = next;
        job.continuation_token = Some(token);
    }
    Err(CliError::Failed(format!("deployment {first_id} still goes on after 24 hours: check crossdeploy status")))
}

/// A run shorter than this is followed by [`PAUSE`] before the next job.
const PAUSE_UNDER: Duration = Duration::from_secs(10);
const PAUSE: Duration = Duration::from_secs(15);
/// Runs of one job, at most, when a run fails or leaves no answer: each later run has the same
/// job id and run id, and finds its own claim or recorded answer, as Lambda's retry of a run does.
const ATTEMPTS: u32 = 5;

/// One job, to its recorded answer.
async fn run_job(worker: &Arc<Worker<InProcessUpdaters>>, job: &Job, run: Duration) -> Result<JobAnswer, CliError> {
    let run_id = format!("{}-run", job.id);
    let mut last = None;
    for attempt in 1..=ATTEMPTS {
        match pipeline_job_worker::handle_job(job.clone(), worker.clone(), Deadline::after(run), &run_id).await {
            Ok(Some(_)) => match recorded_answer(&worker.ledger, &job.id).await {
                Ok(answer) => return Ok(answer),
                Err(e) => last = Some(e),
            },
            Ok(None) => return Err(CliError::Failed(format!("job {} was claimed by another run", job.id))),
            Err(e) => last = Some(CliError::Failed(format!("job {} could not go on: {e}", job.id))),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(Duration::from_secs(2u64 << attempt)).await;
        }
    }
    Err(last.unwrap_or_else(|| CliError::Failed(format!("job {} ended without an answer", job.id))))
}

async fn recorded_answer(ledger: &Ledger, job_id: &str) -> Result<JobAnswer, CliError> {
    let state = ledger.job_state(job_id).await.map_err(CliError::ledger)?;
    let data = state.and_then(|s| s.answer).map(|a| a.data).ok_or_else(|| {
        CliError::Failed(format!("job {job_id} ended without an answer in the ledger: check crossdeploy status"))
    })?;
    serde_json::from_str(&data).map_err(|e| CliError::Failed(format!("job {job_id}'s answer cannot be read: {e}")))
}

/// A random id (128 bits, hex), from the OS's randomness by way of the standard library's
/// hasher keys, for job ids no one else uses.
fn unique_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::new();
    for _ in 0..2 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0),
        );
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

/// Where the artifact is: an `s3://bucket/key` as it is, or a file uploaded first to
/// `s3://<bucket>/crossdeploy-cli/<id>/<file name>`. An image file (ECS's `imagedefinitions.json`
/// or `imageDetail.json`, any file not a zip) is put in a zip of its own, as a pipeline's
/// artifact holds it.
pub async fn artifact(
    config: &SdkConfig,
    given: &str,
    bucket: Option<&str>,
    out: &mut dyn Write,
) -> Result<ArtifactLocation, CliError> {
    if let Some(rest) = given.strip_prefix("s3://") {
        let (bucket, key) = rest
            .split_once('/')
            .filter(|(b, k)| !b.is_empty() && !k.is_empty())
            .ok_or_else(|| CliError::Configuration(format!("`{given}` is not s3://<bucket>/<key>")))?;
        return Ok(ArtifactLocation { bucket: bucket.to_owned(), key: key.to_owned() });
    }
    let path = std::path::Path::new(given);
    let bytes = std::fs::read(path).map_err(|e| CliError::Configuration(format!("cannot read {given}: {e}")))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("artifact").to_owned();
    let bytes =
        if bytes.starts_with(b"PK\x03\x04") || name.ends_with(".zip") { bytes } else { zip_one(&name, &bytes)? };
    let bucket = bucket.ok_or_else(|| {
        CliError::Configuration(
            "a local file needs a bucket to upload it to: give --artifact-bucket or set CROSSDEPLOY_ARTIFACT_BUCKET (or give s3://...)"
                .to_owned(),
        )
    })?;
    let key = format!(
        "crossdeploy-cli/{}/{}",
        unique_id(),
        if name.ends_with(".zip") { name.clone() } else { format!("{name}.zip") }
    );
    let _ = writeln!(out, "uploading {given} to s3://{bucket}/{key}");
    aws_sdk_s3::Client::new(config).put_object().bucket(bucket).key(&key).body(bytes.into()).send().await.map_err(
        |e| {
            use aws_sdk_s3::error::ProvideErrorMetadata;
            CliError::aws(
                &format!("failed to upload {given} to s3://{bucket}/{key}"),
                e.code(),
                e.message().unwrap_or(&e.to_string()),
            )
        },
    )?;
    Ok(ArtifactLocation { bucket: bucket.to_owned(), key })
}

fn zip_one(name: &str, bytes: &[u8]) -> Result<Vec<u8>, CliError> {
    use std::io::Cursor;
    let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let failed = |e: String| CliError::Failed(format!("could not zip {name}: {e}"));
    z.start_file(name, options).map_err(|e| failed(e.to_string()))?;
    z.write_all(bytes).map_err(|e| failed(e.to_string()))?;
    Ok(z.finish().map_err(|e| failed(e.to_string()))?.into_inner())
}

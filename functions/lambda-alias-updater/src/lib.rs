//! lambda-alias-updater: deploys a Lambda package into a target account.
//!
//! Reads the package from the artifact bucket (with this function's own credentials), assumes the
//! target role (allow-list first), and unless the alias already serves that code: updates the
//! code (RevisionId precondition), waits for the update to settle, publishes a version guarded by
//! its CodeSha256, and moves the alias. Waits stop before the deadline and hand back state to
//! resume from.

mod alias;
mod artifact;
mod deploy;
mod error;
mod function;
mod image;
mod rollback;
pub mod shift;
mod staging;
mod upload;
mod version;

pub use alias::{read_alias, route_alias, upsert_alias, AliasState, Moved};
pub use artifact::{
    read_package, Package, DIRECT_UPLOAD_THRESHOLD, MAX_DIRECT_UPLOAD_BYTES, MAX_PACKAGE_BYTES, MAX_UNZIPPED_BYTES,
};
pub use deploy::{deploy_package, resume, Gates, LambdaState, Shifting, ALARM_POLL, MUTATION_MARGIN, RESTORE_RESERVE};
pub use error::UpdaterError;
pub use function::{code_state, stage_if_needed, update_code, wait_for_update, CodeState, FunctionRef, Settled};
pub use image::{parse_image_file, Image, MAX_IMAGE_FILE_BYTES};
pub use rollback::{guard, rollback_alias, Guard};
pub use staging::{staging_bucket, Staged, Staging, PART_BYTES};
pub use version::{publish_version, wait_for_version, Published, Readiness};

use aws_config::SdkConfig;
use crossdeploy_aws::Deadline;
use crossdeploy_credentials::TargetSessions;
use crossdeploy_ledger::Origin;
use crossdeploy_protocol::{
    outputs, DeployRequest, DeploySpec, Outcome, RollbackRequest, RollbackSpec, UpdaterRequest,
};
use std::time::Duration;

/// Time kept back from the invocation's deadline to answer.
pub const ANSWER_MARGIN: Duration = Duration::from_secs(10);
/// The budget when the runtime gives no usable deadline (see [`Deadline::from_epoch_millis`]).
pub const FALLBACK_BUDGET: Duration = Duration::from_secs(300);

/// Clients built once per cold start.
pub struct Deps {
    /// The artifact bucket, with this function's own credentials.
    pub s3: aws_sdk_s3::Client,
    pub sessions: TargetSessions,
    /// Where requests come from: only the worker's and deploy-rollback's are acted on.
    pub origin: Origin,
}

impl Deps {
    pub fn from_config(config: &SdkConfig) -> Self {
        Self {
            s3: aws_sdk_s3::Client::new(config),
            sessions: TargetSessions::from_env(config),
            origin: Origin::from_config(config),
        }
    }
}

/// Handles one request (the Lambda event, as JSON) and always answers with an [`Outcome`].
pub async fn handle(event: serde_json::Value, deps: &Deps, deadline: Deadline) -> Outcome {
    // Of the JSON as it came, before it is read: what the worker or deploy-rollback vouched for.
    let fingerprint = crossdeploy_protocol::fingerprint_of(&event);
    crossdeploy_aws::handle_updater_request(event, deadline, ANSWER_MARGIN, |request, deadline| async move {
        // Before anything else (no read, no AssumeRole): does the request come from the worker
        // or deploy-rollback?
        match Box::pin(deps.origin.check("lambda-alias-updater", &request, &fingerprint, deadline)).await {
            Ok(()) => {}
            // Unknown, not refused: nothing was done; the caller asks again from the same state.
            Err(e @ crossdeploy_ledger::OriginError::Unreadable { .. }) => {
                return Ok(crossdeploy_ledger::not_checked(&request, &e))
            }
            Err(e) => return Err(UpdaterError::Origin(Box::new(e))),
        }
        // Boxed: the deployment's future is deep, and rustc's layout of the runtime's future must stay bounded.
        match request {
            UpdaterRequest::Deploy(r) => Box::pin(deploy(&r, deps, deadline)).await,
            UpdaterRequest::Rollback(r) => Box::pin(rollback(&r, deps, deadline)).await,
        }
    })
    .await
}

/// One deployment request, from the allow-list check to the moved alias.
pub async fn deploy(request: &DeployRequest, deps: &Deps, deadline: Deadline) -> Result<Outcome, UpdaterError> {
    let DeploySpec::Lambda(spec) = &request.spec else {
        return Err(UpdaterError::Configuration(
            "lambda-alias-updater deploys Lambda functions only; an ECS request belongs to ecs-taskdef-updater"
                .to_owned(),
        ));
    };
    let role = &request.target.role_arn;
    // Refuse a role off the allow-list before reading anything.
    if !deps.sessions.allow_list().allows(role) {
        return Err(crossdeploy_credentials::CredentialsError::NotAllowed { role: role.clone() }.into());
    }
    let ctx = &request.pipeline;
    // A container image is named in a small file of the artifact: read on resumes too, for the outputs.
    let image = match &spec.image_file {
        Some(path) => Some(read_image(&deps.s3, &request.artifact, path, deadline).await?),
        None => None,
    };
    // Either resume from an earlier invocation's state, or start with the package.
    enum Work {
        Resume(LambdaState),
        Fresh(Package),
    }
    let work = match (request.resume.as_ref().filter(|s| !s.is_null()), &image) {
        (Some(state), _) => Work::Resume(serde_json::from_value::<LambdaState>(state.clone()).map_err(|e| {
            UpdaterError::BadRequest(format!("the state to resume from is not one this updater wrote: {e}"))
        })?),
        (None, Some(image)) => Work::Fresh(Package::image(image.clone())),
        (None, None) => {
            Work::Fresh(read_package(&deps.s3, &request.artifact, spec.artifact_path.as_deref(), deadline).await?)
        }
    };
    let seed = ctx.execution_id.as_deref().unwrap_or(&ctx.job_id);
    let session = deps.sessions.assume(role, request.target.region.as_deref(), seed, deadline).await?;
    let lambda = aws_sdk_lambda::Client::new(&session.config);
    let f = FunctionRef {
        lambda: &lambda,
        account: role.account_id(),
        function: &spec.function_name,
        alias: &spec.alias,
        deployment: request.deployment_id(),
    };
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&session.config);
    let region = session.config.region().map(|r| r.to_string()).ok_or_else(|| {
        UpdaterError::Configuration(format!(
            "no region for the target {role}: set Region in the action, or AWS_REGION for the updater"
        ))
    })?;
    let staging = Staging {
        s3: aws_sdk_s3::Client::new(&session.config),
        bucket: staging_bucket(role.account_id(), &region),
        account: role.account_id().to_owned(),
    };
    let gates = Gates {
        strategy: spec.strategy,
        alarms: &request.alarm_names,
        cloudwatch: &cloudwatch,
        staging: Some(&staging),
    };
    // Before a fresh deployment changes anything: may the role make every call it needs?
    if let Work::Fresh(package) = &work {
        let needed = needed_calls(role, &region, spec, &request.alarm_names, package, &staging);
        crossdeploy_credentials::preflight(&session, &needed, deadline).await?;
    }
    let outcome = match work {
        Work::Resume(state) => resume(&f, &gates, state, ctx, deadline).await,
        Work::Fresh(package) => deploy_package(&f, &gates, &package, ctx, deadline).await,
    }?;
    Ok(match (outcome, image) {
        (Outcome::Succeeded { summary, mut outputs }, Some(image)) => {
            let digest = outputs.get(outputs::CODE_SHA256).cloned().unwrap_or_else(|| image.digest_hex.clone());
            outputs.insert(outputs::IMAGE_URI.to_owned(), image.named.clone());
            outputs.insert(outputs::RESOLVED_IMAGE_URI.to_owned(), format!("{}@sha256:{digest}", image.repository));
            Outcome::Succeeded { summary, outputs }
        }
        (outcome, _) => outcome,
    })
}

/// Every call a fresh deployment of `package` makes in the target account, on its resources.
pub fn needed_calls(
    role: &crossdeploy_protocol::RoleArn,
    region: &str,
    spec: &crossdeploy_protocol::LambdaSpec,
    alarms: &[String],
    package: &Package,
    staging: &Staging,
) -> Vec<crossdeploy_credentials::Needed> {
    use crossdeploy_credentials::Needed;
    let (partition, account) = (role.partition(), role.account_id());
    // FunctionName may be a name, an ARN or a partial ARN; the calls act on the function's ARN.
    let name = match spec.function_name.split_once("function:") {
        Some((_, rest)) => rest.split(':').next().unwrap_or(rest),
        None => spec.function_name.as_str(),
    };
    let function = format!("arn:{partition}:lambda:{region}:{account}:function:{name}");
    let mut needed: Vec<Needed> = [
        "lambda:GetAlias",
        "lambda:GetFunctionConfiguration",
        "lambda:UpdateFunctionCode",
        "lambda:PublishVersion",
        "lambda:UpdateAlias",
        "lambda:ListVersionsByFunction",
    ]
    .into_iter()
    .map(|action| Needed::new(action, &function))
    .collect();
    if !alarms.is_empty() {
        needed.push(Needed::new("cloudwatch:DescribeAlarms", "*"));
    }
    match package.as_image() {
        Some(image) => {
            // <account>.dkr.ecr.<region>.amazonaws.com/<name>
            let (host, repository) = image.repository.split_once('/').unwrap_or((&image.repository, ""));
            let mut parts = host.split('.');
            let (owner, ecr_region) = (parts.next().unwrap_or_default(), parts.nth(2).unwrap_or(region));
            let arn = format!("arn:{partition}:ecr:{ecr_region}:{owner}:repository/{repository}");
            needed.push(Needed::new("ecr:BatchGetImage", &arn));
            needed.push(Needed::new("ecr:GetDownloadUrlForLayer", &arn));
        }
        None if !package.direct() => {
            let object = format!("arn:{partition}:s3:::{}/{}", staging.bucket, Staging::key(name, package));
            for action in ["s3:PutObject", "s3:GetObject"] {
                needed.push(Needed::new(action, &object).with("s3:ResourceAccount", account));
            }
            needed.push(
                Needed::new("s3:ListBucket", format!("arn:{partition}:s3:::{}", staging.bucket))
                    .with("s3:ResourceAccount", account),
            );
        }
        None => {}
    }
    needed
}

/// The container image named by the file at `path` in the artifact.
async fn read_image(
    s3: &aws_sdk_s3::Client,
    location: &crossdeploy_protocol::ArtifactLocation,
    path: &str,
    deadline: Deadline,
) -> Result<Image, UpdaterError> {
    let limit = "an image file is at most 102400 bytes (100 KB)";
    let bytes = crossdeploy_artifact::read_file(s3, location, path, MAX_IMAGE_FILE_BYTES, limit, deadline).await?;
    parse_image_file(&bytes, path).map_err(|e| UpdaterError::Configuration(format!("{e} (in {location})")))
}

/// One rollback request: the allow-list, the target role, and the guarded move of the alias back.
pub async fn rollback(request: &RollbackRequest, deps: &Deps, deadline: Deadline) -> Result<Outcome, UpdaterError> {
    let RollbackSpec::Lambda(spec) = &request.spec else {
        return Err(UpdaterError::Configuration(
            "lambda-alias-updater rolls back Lambda aliases only; an ECS rollback belongs to ecs-taskdef-updater"
                .to_owned(),
        ));
    };
    let role = &request.target.role_arn;
    // `assume` checks the allow-list before anything else.
    let session = deps.sessions.assume(role, request.target.region.as_deref(), &request.request_id, deadline).await?;
    let lambda = aws_sdk_lambda::Client::new(&session.config);
    let f = FunctionRef {
        lambda: &lambda,
        account: role.account_id(),
        function: &spec.function_name,
        alias: &spec.alias,
        deployment: &request.request_id,
    };
    rollback_alias(&f, spec, request.deployment_id.as_deref(), &request.request_id, &request.reason, deadline).await
}

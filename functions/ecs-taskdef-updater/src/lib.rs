//! ecs-taskdef-updater: deploys new images to an ECS service in a target account.
//!
//! Reads the image file from the input artifact (with this function's own credentials), assumes
//! the target role (allow-list first), clones the service's current task definition with the
//! new images (every field kept but the read-only ones, tags too), registers it, updates the
//! service (with the deployment strategy asked for), and follows the service deployment that
//! starts to its end: SUCCESSFUL, or ECS's rollback; crossdeploy's own alarms and TimeoutMinutes
//! stop it with rollback. Where ECS keeps no service deployments, the rollout is read from the
//! service's deployments list instead.
//! Waiting never outlives the deadline: the state to resume from is handed back instead.
//! Old revisions are never deregistered (rollback needs them).

mod deploy;
mod error;
pub mod images;
mod rollback;
mod service;
pub mod service_deployment;
pub mod strategy;
pub mod taskdef;

pub use deploy::{deploy_images, follow, needed_calls, Alarms, EcsState, FIRST_POLL, POLL, ROLLBACK_LIMIT};
pub use error::EcsError;
pub use rollback::{guard, rollback_service, Guard};
pub use service::{assess, describe_service, Rollout, ServiceRef, Updated};
pub use strategy::Asked;

use aws_config::SdkConfig;
use crossdeploy_artifact::read_file;
use crossdeploy_aws::Deadline;
use crossdeploy_credentials::TargetSessions;
use crossdeploy_ledger::Origin;
use crossdeploy_protocol::{DeployRequest, DeploySpec, Outcome, RollbackRequest, RollbackSpec, UpdaterRequest};
use std::time::Duration;

/// Time kept back from the invocation's deadline to answer.
pub const ANSWER_MARGIN: Duration = Duration::from_secs(10);
/// The budget when the runtime gives no usable deadline.
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
        match Box::pin(deps.origin.check("ecs-taskdef-updater", &request, &fingerprint, deadline)).await {
            Ok(()) => {}
            // Unknown, not refused: nothing was done; the caller asks again from the same state.
            Err(e @ crossdeploy_ledger::OriginError::Unreadable { .. }) => {
                return Ok(crossdeploy_ledger::not_checked(&request, &e))
            }
            Err(e) => return Err(EcsError::Origin(Box::new(e))),
        }
        // Boxed: the deployment's future is deep, and rustc's layout of the runtime's future must stay bounded.
        match request {
            UpdaterRequest::Deploy(r) => Box::pin(deploy(&r, deps, deadline)).await,
            UpdaterRequest::Rollback(r) => Box::pin(rollback(&r, deps, deadline)).await,
        }
    })
    .await
}

/// One deployment request, from the allow-list check to the end of the rollout.
pub async fn deploy(request: &DeployRequest, deps: &Deps, deadline: Deadline) -> Result<Outcome, EcsError> {
    let DeploySpec::Ecs(spec) = &request.spec else {
        return Err(EcsError::Configuration(
            "ecs-taskdef-updater deploys ECS services only; a Lambda request belongs to lambda-alias-updater"
                .to_owned(),
        ));
    };
    let role = &request.target.role_arn;
    if !deps.sessions.allow_list().allows(role) {
        return Err(crossdeploy_credentials::CredentialsError::NotAllowed { role: role.clone() }.into());
    }
    let resume = match request.resume.as_ref().filter(|s| !s.is_null()) {
        None => None,
        Some(state) => Some(serde_json::from_value::<EcsState>(state.clone()).map_err(|e| {
            EcsError::BadRequest(format!("the state to resume from is not one this updater wrote: {e}"))
        })?),
    };
    let changes = match resume {
        Some(_) => Vec::new(),
        None => {
            // Ranged reads: the zip's central directory, then this one entry, whatever the artifact's size.
            let file = read_file(
                &deps.s3,
                &request.artifact,
                &spec.file_name,
                images::MAX_IMAGE_FILE_BYTES,
                "an image file is at most 102400 bytes (100 KB)",
                deadline,
            )
            .await?;
            images::parse_image_file(&file, &spec.file_name, spec.container_name.as_deref())
                .map_err(|e| EcsError::Configuration(format!("{e} (in {})", request.artifact)))?
        }
    };
    let ctx = &request.pipeline;
    let seed = ctx.execution_id.as_deref().unwrap_or(&ctx.job_id);
    let session = deps.sessions.assume(role, request.target.region.as_deref(), seed, deadline).await?;
    let ecs = aws_sdk_ecs::Client::new(&session.config);
    let s = ServiceRef {
        ecs: &ecs,
        account: role.account_id(),
        cluster: &spec.cluster_name,
        service: &spec.service_name,
        deployment: request.deployment_id(),
        session: Some(&session),
    };
    let timeout = Duration::from_secs(u64::from(spec.timeout_minutes) * 60);
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&session.config);
    let alarms = Alarms { names: &request.alarm_names, cloudwatch: &cloudwatch };
    match resume {
        Some(state) => follow(&s, state, timeout, &alarms, deadline).await,
        None => {
            let asked = Asked::of(spec, &request.alarm_names);
            deploy_images(&s, &changes, &asked, timeout, &alarms, deadline).await
        }
    }
}

/// One rollback request: the allow-list, the target role, and the guarded update back.
pub async fn rollback(request: &RollbackRequest, deps: &Deps, deadline: Deadline) -> Result<Outcome, EcsError> {
    let RollbackSpec::Ecs(spec) = &request.spec else {
        return Err(EcsError::Configuration(
            "ecs-taskdef-updater rolls back ECS services only; a Lambda rollback belongs to lambda-alias-updater"
                .to_owned(),
        ));
    };
    let role = &request.target.role_arn;
    // `assume` checks the allow-list before anything else.
    let session = deps.sessions.assume(role, request.target.region.as_deref(), &request.request_id, deadline).await?;
    let ecs = aws_sdk_ecs::Client::new(&session.config);
    let s = ServiceRef {
        ecs: &ecs,
        account: role.account_id(),
        cluster: &spec.cluster_name,
        service: &spec.service_name,
        deployment: &request.request_id,
        // A rollback puts back what ran before: no preflight (the role ran it already).
        session: None,
    };
    rollback_service(&s, spec, request.deployment_id.as_deref(), &request.request_id, &request.reason, deadline).await
}

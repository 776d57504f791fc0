//! The ECS deployment: image file -> new revision -> UpdateService -> the rollout to its end.

use crate::images::ImageChange;
use crate::service::{assess, check_controller, describe_service, update_service, Rollout, ServiceRef};
use crate::taskdef::{clone_into, replace_images, runs_images, PREVIOUS_TAG};
use crate::EcsError;
use aws_sdk_ecs::types::{Tag, TaskDefinition, TaskDefinitionField};
use crossdeploy_alarms::firing_alarm;
use crossdeploy_aws::{retry, Backoff, Deadline, ErrorInfo};
use crossdeploy_protocol::{outputs, Outcome};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The alarms that gate a rollout, in the target account.
#[derive(Debug, Clone, Copy)]
pub struct Alarms<'a> {
    pub names: &'a [String],
    pub cloudwatch: &'a aws_sdk_cloudwatch::Client,
}

/// Time between two reads of the rollout.
pub const POLL: Duration = Duration::from_secs(10);

/// What a deployment hands back to resume from when it must stop before the deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "Phase")]
pub enum EcsState {
    /// The service was updated; ECS is rolling the new revision out.
    FollowingRollout {
        #[serde(rename = "TaskDefinitionArn")]
        task_definition_arn: String,
        #[serde(rename = "PreviousTaskDefinitionArn")]
        previous_task_definition_arn: String,
        /// When following started (seconds since the epoch): TimeoutMinutes counts from here.
        #[serde(rename = "StartedAt")]
        started_at: u64,
    },
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Moves the service to its current task definition with `changes` applied, then follows the
/// rollout. Registers nothing when the service already runs exactly these images.
pub async fn deploy_images(
    s: &ServiceRef<'_>,
    changes: &[ImageChange],
    timeout: Duration,
    alarms: &Alarms<'_>,
    deadline: Deadline,
) -> Result<Outcome, EcsError> {
    let service = describe_service(s, deadline).await?;
    check_controller(s, &service)?;
    if let Some(firing) = firing_alarm(alarms.cloudwatch, alarms.names, s.account, deadline).await? {
        return Err(EcsError::Rollout(format!(
            "alarm {} in account {} is in ALARM already ({}); nothing was deployed to {}. Deploy once it is OK",
            firing.name,
            s.account,
            firing.reason,
            s.describe()
        )));
    }
    let current = service
        .task_definition()
        .ok_or_else(|| EcsError::Configuration(format!("{} has no task definition", s.describe())))?
        .to_owned();
    let (td, tags) = describe_task_definition(s, &current, deadline).await?;
    let containers = replace_images(td.container_definitions(), changes)
        .map_err(|e| EcsError::Configuration(format!("{e} ({}, task definition {current})", s.describe())))?;

    if runs_images(td.container_definitions(), changes) {
        let previous =
            tags.iter().find(|t| t.key() == Some(PREVIOUS_TAG)).and_then(|t| t.value()).unwrap_or(&current).to_owned();
        tracing::info!(service = s.service, task_definition = %current, "the service already runs these images; nothing registered");
        let state = EcsState::FollowingRollout {
            task_definition_arn: current.clone(),
            previous_task_definition_arn: previous,
            started_at: now_secs(),
        };
        return Ok(match follow_from(s, state, Some(service), timeout, alarms, deadline).await? {
            Outcome::Succeeded { outputs, .. } => Outcome::Succeeded {
                summary: format!("{} already runs these images on {current}; nothing changed", s.describe()),
                outputs,
            },
            other => other,
        });
    }

    let new_arn = register(s, &td, &tags, containers, &current, deadline).await?;
    tracing::info!(service = s.service, task_definition = %new_arn, previous = %current, "registered; updating the service");
    update_service(s, &new_arn, deadline).await?;
    let state = EcsState::FollowingRollout {
        task_definition_arn: new_arn,
        previous_task_definition_arn: current,
        started_at: now_secs(),
    };
    follow(s, state, timeout, alarms, deadline).await
}

/// Follows the rollout of `state` until it completes (success), fails or is rolled back (an
/// error with ECS's reason and the service's latest events), outlives `timeout` (an error), or
/// the deadline comes near (InProgress, with the state to resume from).
pub async fn follow(
    s: &ServiceRef<'_>,
    state: EcsState,
    timeout: Duration,
    alarms: &Alarms<'_>,
    deadline: Deadline,
) -> Result<Outcome, EcsError> {
    follow_from(s, state, None, timeout, alarms, deadline).await
}

/// [`follow`], starting from a service just described (`None`: describe it first).
async fn follow_from(
    s: &ServiceRef<'_>,
    state: EcsState,
    mut described: Option<aws_sdk_ecs::types::Service>,
    timeout: Duration,
    alarms: &Alarms<'_>,
    deadline: Deadline,
) -> Result<Outcome, EcsError> {
    let EcsState::FollowingRollout { task_definition_arn, previous_task_definition_arn, started_at } = &state;
    loop {
        let service = match described.take() {
            Some(service) => service,
            None => describe_service(s, deadline).await?,
        };
        match assess(&service, task_definition_arn) {
            Rollout::Completed { deployment_id } => {
                tracing::info!(service = s.service, %deployment_id, "rollout completed");
                let outputs = BTreeMap::from([
                    (outputs::TASK_DEFINITION_ARN.to_owned(), task_definition_arn.clone()),
                    (outputs::PREVIOUS_TASK_DEFINITION_ARN.to_owned(), previous_task_definition_arn.clone()),
                    (outputs::DEPLOYMENT_ID.to_owned(), deployment_id.clone()),
                ]);
                let summary = format!(
                    "{}: {previous_task_definition_arn} -> {task_definition_arn}, deployment {deployment_id} completed",
                    s.describe()
                );
                return Ok(Outcome::Succeeded { summary, outputs });
            }
            Rollout::Failed { reason } => {
                return Err(EcsError::Rollout(format!(
                    "the deployment of {task_definition_arn} to {} failed: {reason}",
                    s.describe()
                )))
            }
            Rollout::RolledBack { reason } => {
                return Err(EcsError::Rollout(format!(
                "the deployment of {task_definition_arn} to {} was rolled back (deployment circuit breaker): {reason}",
                s.describe()
            )))
            }
            Rollout::InProgress { deployment_id } => {
                if let Some(firing) = firing_alarm(alarms.cloudwatch, alarms.names, s.account, deadline).await? {
                    tracing::error!(service = s.service, alarm = %firing.name, "alarm in ALARM: restoring the service");
                    update_service(s, previous_task_definition_arn, deadline).await?;
                    return Err(EcsError::Rollout(format!(
                        "alarm {} in account {} is in ALARM ({}) during deployment {deployment_id} of {task_definition_arn}; {} was updated back to {previous_task_definition_arn}",
                        firing.name,
                        s.account,
                        firing.reason,
                        s.describe()
                    )));
                }
                let waited = now_secs().saturating_sub(*started_at);
                if waited >= timeout.as_secs() {
                    return Err(EcsError::Rollout(format!(
                        "deployment {deployment_id} of {task_definition_arn} to {} did not complete within {} minutes (TimeoutMinutes); ECS goes on with it: check the service's events, or raise TimeoutMinutes",
                        s.describe(),
                        timeout.as_secs() / 60
                    )));
                }
                if deadline.remaining() <= POLL {
                    let percent = (waited * 90 / timeout.as_secs().max(1)).min(90) as u8;
                    return Ok(Outcome::InProgress {
                        summary: format!(
                            "deployment {deployment_id} of {task_definition_arn} to {} in progress",
                            s.describe()
                        ),
                        percent_complete: percent.max(10),
                        state: serde_json::to_value(&state).unwrap_or_default(),
                    });
                }
                tracing::info!(service = s.service, %deployment_id, waited, "rollout in progress");
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

async fn describe_task_definition(
    s: &ServiceRef<'_>,
    arn: &str,
    deadline: Deadline,
) -> Result<(TaskDefinition, Vec<Tag>), EcsError> {
    let out = retry(
        "DescribeTaskDefinition",
        Backoff::CONTROL_PLANE,
        deadline,
        |e: &aws_sdk_ecs::error::SdkError<
            aws_sdk_ecs::operation::describe_task_definition::DescribeTaskDefinitionError,
        >| ErrorInfo::from_sdk(e).is_throttling(),
        || s.ecs.describe_task_definition().task_definition(arn).include(TaskDefinitionField::Tags).send(),
    )
    .await
    .map_err(|e| EcsError::Aws {
        action: "describe task definition",
        resource: format!("{arn} in account {}", s.account),
        error: ErrorInfo::from_sdk(&e),
    })?;
    let td = out.task_definition.ok_or_else(|| EcsError::Aws {
        action: "describe task definition",
        resource: arn.to_owned(),
        error: ErrorInfo { code: None, message: "no task definition in the answer".into() },
    })?;
    Ok((td, out.tags.unwrap_or_default()))
}

/// `RegisterTaskDefinition` of the clone; throttling (1 per second, burst 20) retried with bounded backoff.
async fn register(
    s: &ServiceRef<'_>,
    td: &TaskDefinition,
    tags: &[Tag],
    containers: Vec<aws_sdk_ecs::types::ContainerDefinition>,
    current: &str,
    deadline: Deadline,
) -> Result<String, EcsError> {
    let family = td.family().unwrap_or_default();
    let out = retry(
        "RegisterTaskDefinition",
        Backoff::CONTROL_PLANE,
        deadline,
        |e: &aws_sdk_ecs::error::SdkError<
            aws_sdk_ecs::operation::register_task_definition::RegisterTaskDefinitionError,
        >| ErrorInfo::from_sdk(e).is_throttling(),
        || clone_into(s.ecs.register_task_definition(), td, tags, containers.clone(), current).send(),
    )
    .await
    .map_err(|e| EcsError::Aws {
        action: "register a new revision of",
        resource: format!("task definition family {family} in account {}", s.account),
        error: ErrorInfo::from_sdk(&e),
    })?;
    out.task_definition.and_then(|t| t.task_definition_arn).ok_or_else(|| EcsError::Aws {
        action: "register a new revision of",
        resource: format!("task definition family {family}"),
        error: ErrorInfo { code: None, message: "no task definition ARN in the answer".into() },
    })
}

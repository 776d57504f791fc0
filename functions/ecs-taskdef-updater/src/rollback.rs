//! Rollback: put the service back on the task definition that stood before a deployment — only
//! while it still runs what that deployment registered.

use crate::deploy::describe_task_definition;
use crate::service::{describe_service, update_service};
use crate::taskdef::{DEPLOYMENT_TAG, PREVIOUS_TAG};
use crate::{EcsError, ServiceRef};
use crossdeploy_aws::Deadline;
use crossdeploy_protocol::{EcsRollback, Outcome, RollbackResult};

/// What a rollback does to a service running `current`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guard {
    /// The service runs the deployed task definition: update it back.
    Restore,
    /// The service runs the task definition to restore already (a rollback before, or ECS's
    /// circuit breaker).
    AlreadyRestored,
    /// The service runs something else: someone deployed since.
    LeftAlone(String),
}

pub fn guard(current: &str, spec: &EcsRollback) -> Guard {
    if current == spec.restore_task_definition {
        Guard::AlreadyRestored
    } else if current == spec.deployed_task_definition {
        Guard::Restore
    } else {
        Guard::LeftAlone(format!(
            "it runs {current}, not {} that crossdeploy deployed: someone deployed since",
            spec.deployed_task_definition
        ))
    }
}

/// Updates the service back to `spec.restore_task_definition` if the guard allows. The rollout
/// this starts is ECS's to finish (its circuit breaker watches it); the outcome names it. A
/// spec with no deployed task definition is a rollback by mark of `deployment`: only a revision
/// whose `crossdeploy:deployment` tag names it is rolled back, to the revision its
/// `crossdeploy:previous-task-definition` tag names.
pub async fn rollback_service(
    s: &ServiceRef<'_>,
    spec: &EcsRollback,
    deployment: Option<&str>,
    request_id: &str,
    reason: &str,
    deadline: Deadline,
) -> Result<Outcome, EcsError> {
    let service = describe_service(s, deadline).await?;
    let current = service.task_definition().unwrap_or_default().to_owned();
    let name = s.describe();
    let marked;
    let spec = match (spec.deployed_task_definition.is_empty(), deployment) {
        (false, _) => spec,
        (true, Some(d)) => {
            let (_, tags) = describe_task_definition(s, &current, deadline).await?;
            let tag = |key: &str| tags.iter().find(|t| t.key() == Some(key)).and_then(|t| t.value()).map(str::to_owned);
            match (tag(DEPLOYMENT_TAG), tag(PREVIOUS_TAG)) {
                (Some(by), Some(previous)) if by == d => {
                    marked = EcsRollback {
                        restore_task_definition: previous,
                        deployed_task_definition: current.clone(),
                        ..spec.clone()
                    };
                    &marked
                }
                _ => {
                    let summary = format!(
                        "{name} runs {current}, no revision deployment {d} registered: nothing of it stands ({reason})"
                    );
                    tracing::info!(%request_id, %summary, "rollback by mark: nothing of the deployment stands");
                    return Ok(RollbackResult::AlreadyRestored.outcome(summary, &current));
                }
            }
        }
        (true, None) => {
            return Err(EcsError::BadRequest(
                "a rollback with no deployed task definition must name its deployment".to_owned(),
            ))
        }
    };
    match guard(&current, spec) {
        Guard::AlreadyRestored => {
            let summary = format!("{name} runs {} already; nothing changed", spec.restore_task_definition);
            tracing::info!(%request_id, %summary, "rollback: already restored");
            Ok(RollbackResult::AlreadyRestored.outcome(summary, &current))
        }
        Guard::LeftAlone(why) => {
            let summary = format!("{name} left alone: {why} ({reason})");
            tracing::warn!(%request_id, %summary, "rollback: left alone");
            Ok(RollbackResult::LeftAlone.outcome(summary, &current))
        }
        Guard::Restore => {
            let deployment = update_service(s, &spec.restore_task_definition, deadline).await?;
            let summary = format!(
                "{name} updated back to {} (was {}), deployment {}: {reason}",
                spec.restore_task_definition,
                spec.deployed_task_definition,
                deployment.as_deref().unwrap_or("unknown")
            );
            tracing::info!(%request_id, %summary, "rollback: restored");
            Ok(RollbackResult::Restored.outcome(summary, &spec.restore_task_definition))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_is_restored_only_while_it_runs_the_deployed_task_definition() {
        let spec = EcsRollback {
            cluster_name: "c".into(),
            service_name: "s".into(),
            restore_task_definition: "arn:aws:ecs:us-east-1:222222222222:task-definition/web:1".into(),
            deployed_task_definition: "arn:aws:ecs:us-east-1:222222222222:task-definition/web:2".into(),
        };
        assert_eq!(guard(&spec.deployed_task_definition, &spec), Guard::Restore);
        assert_eq!(guard(&spec.restore_task_definition, &spec), Guard::AlreadyRestored);
        let Guard::LeftAlone(why) = guard("arn:aws:ecs:us-east-1:222222222222:task-definition/web:3", &spec) else {
            panic!("expected LeftAlone")
        };
        assert!(why.contains("web:3") && why.contains("someone deployed since"), "{why}");
    }
}

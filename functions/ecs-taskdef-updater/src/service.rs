//! The service: what it runs, moving it to a new revision, and following the rollout.

use crate::EcsError;
use aws_sdk_ecs::types::{DeploymentControllerType, DeploymentRolloutState, Service};
use crossdeploy_aws::{retry, Backoff, Deadline, ErrorInfo};

/// The ECS service deployed to, with the client of its account.
#[derive(Debug, Clone, Copy)]
pub struct ServiceRef<'a> {
    pub ecs: &'a aws_sdk_ecs::Client,
    pub account: &'a str,
    pub cluster: &'a str,
    pub service: &'a str,
}

impl ServiceRef<'_> {
    pub fn describe(&self) -> String {
        format!("service {} in cluster {} of account {}", self.service, self.cluster, self.account)
    }
}

/// `DescribeServices` for the one service; a missing cluster or service, or one that is not
/// ACTIVE, is a configuration error naming both.
pub async fn describe_service(s: &ServiceRef<'_>, deadline: Deadline) -> Result<Service, EcsError> {
    let out = retry(
        "DescribeServices",
        Backoff::CONTROL_PLANE,
        deadline,
        |e: &aws_sdk_ecs::error::SdkError<aws_sdk_ecs::operation::describe_services::DescribeServicesError>| {
            ErrorInfo::from_sdk(e).is_throttling()
        },
        || s.ecs.describe_services().cluster(s.cluster).services(s.service).send(),
    )
    .await
    .map_err(|e| {
        if e.as_service_error().is_some_and(|x| x.is_cluster_not_found_exception()) {
            return EcsError::Configuration(format!(
                "cluster {} does not exist in account {}: check ClusterName and Region",
                s.cluster, s.account
            ));
        }
        EcsError::Aws { action: "describe", resource: s.describe(), error: ErrorInfo::from_sdk(&e) }
    })?;
    let service = out.services.unwrap_or_default().into_iter().find(|x| x.service_name() == Some(s.service));
    match service {
        Some(svc) if svc.status() == Some("ACTIVE") => Ok(svc),
        Some(svc) => Err(EcsError::Configuration(format!(
            "{} is {}, not ACTIVE: deploy to an active service",
            s.describe(),
            svc.status().unwrap_or("in an unknown state")
        ))),
        None => {
            let reason = out
                .failures
                .unwrap_or_default()
                .into_iter()
                .filter_map(|f| f.reason)
                .next()
                .unwrap_or_else(|| "MISSING".to_owned());
            Err(EcsError::Configuration(format!(
                "{} does not exist ({reason}): check ServiceName, ClusterName and Region",
                s.describe()
            )))
        }
    }
}

/// The service must use the rolling ECS deployment controller, whose rollouts crossdeploy follows.
pub fn check_controller(s: &ServiceRef<'_>, service: &Service) -> Result<(), EcsError> {
    match service.deployment_controller().map(|c| c.r#type()) {
        None | Some(DeploymentControllerType::Ecs) => Ok(()),
        Some(other) => Err(EcsError::Configuration(format!(
            "{} uses the {} deployment controller; crossdeploy deploys services with the rolling ECS controller",
            s.describe(),
            other.as_str()
        ))),
    }
}

/// `UpdateService` to `task_definition`; returns the id of the new deployment.
pub async fn update_service(
    s: &ServiceRef<'_>,
    task_definition: &str,
    deadline: Deadline,
) -> Result<Option<String>, EcsError> {
    let out = retry(
        "UpdateService",
        Backoff::CONTROL_PLANE,
        deadline,
        |e: &aws_sdk_ecs::error::SdkError<aws_sdk_ecs::operation::update_service::UpdateServiceError>| {
            ErrorInfo::from_sdk(e).is_throttling()
        },
        || s.ecs.update_service().cluster(s.cluster).service(s.service).task_definition(task_definition).send(),
    )
    .await
    .map_err(|e| EcsError::Aws { action: "update", resource: s.describe(), error: ErrorInfo::from_sdk(&e) })?;
    Ok(out
        .service
        .and_then(|svc| {
            svc.deployments.unwrap_or_default().into_iter().find(|d| d.task_definition() == Some(task_definition))
        })
        .and_then(|d| d.id))
}

/// Where a rollout to a task definition stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rollout {
    Completed {
        deployment_id: String,
    },
    InProgress {
        deployment_id: String,
    },
    /// ECS marked the deployment FAILED.
    Failed {
        reason: String,
    },
    /// The deployment is gone and the service is back on another revision: the circuit breaker
    /// (or someone) rolled it back.
    RolledBack {
        reason: String,
    },
}

/// Reads the rollout to `task_definition` from a described service.
pub fn assess(service: &Service, task_definition: &str) -> Rollout {
    let events: Vec<&str> = service.events().iter().take(3).filter_map(|e| e.message()).collect();
    let events = if events.is_empty() { "no service events".to_owned() } else { events.join(" | ") };
    match service.deployments().iter().find(|d| d.task_definition() == Some(task_definition)) {
        Some(d) => {
            let id = d.id().unwrap_or_default().to_owned();
            match d.rollout_state() {
                Some(DeploymentRolloutState::Completed) => Rollout::Completed { deployment_id: id },
                Some(DeploymentRolloutState::Failed) => Rollout::Failed {
                    reason: format!(
                        "{} (service events: {events})",
                        d.rollout_state_reason().unwrap_or("ECS gave no reason")
                    ),
                },
                // A deployment ECS drained to ACTIVE while another is PRIMARY is being replaced.
                _ if d.status() == Some("ACTIVE")
                    && service.deployments().iter().any(|p| p.status() == Some("PRIMARY")) =>
                {
                    Rollout::RolledBack { reason: format!("another deployment replaced it (service events: {events})") }
                }
                _ => Rollout::InProgress { deployment_id: id },
            }
        }
        None => Rollout::RolledBack {
            reason: format!(
                "the service runs {} again (service events: {events})",
                service.task_definition().unwrap_or("another revision")
            ),
        },
    }
}

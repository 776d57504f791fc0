//! ECS service deployments (ListServiceDeployments, DescribeServiceDeployments,
//! StopServiceDeployment, DescribeServiceRevisions): the record ECS keeps of every deployment of
//! a service, with an explicit status, the lifecycle stage, the traffic split, and what the
//! circuit breaker and the deployment alarms found.

use crate::{EcsError, ServiceRef};
use aws_sdk_ecs::types::{
    CreatedAt, ServiceDeployment, ServiceDeploymentLifecycleStage, ServiceDeploymentRollbackMonitorsStatus,
    ServiceDeploymentStatus, StopServiceDeploymentStopType,
};
use aws_smithy_types::DateTime;
use crossdeploy_aws::{is_transient, retry, Backoff, Deadline, ErrorInfo};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

/// An answer, or word that the service deployment API does not exist where the service is (an
/// older partition or region): crossdeploy then reads the service's deployments list instead.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup<T> {
    Found(T),
    /// The API is absent: the error code that said so.
    Absent(String),
}

/// Error codes that say an operation does not exist here (rather than that a call failed).
fn says_absent(e: &ErrorInfo) -> bool {
    matches!(
        e.code.as_deref(),
        Some("UnknownOperationException" | "InvalidAction" | "UnsupportedFeatureException" | "NotImplemented")
    )
}

static ABSENT_LOGGED: AtomicBool = AtomicBool::new(false);

/// Logs, once per process, that the rollout is followed through DescribeServices' deployments.
pub fn note_absent(s: &ServiceRef<'_>, code: &str) {
    if !ABSENT_LOGGED.swap(true, Ordering::SeqCst) {
        tracing::warn!(
            account = s.account,
            cluster = s.cluster,
            service = s.service,
            code,
            "ECS's service deployment API is not available here; following rollouts through DescribeServices' deployments list instead (logged once)"
        );
    }
}

fn aws_error(action: &'static str, resource: String, e: ErrorInfo) -> EcsError {
    EcsError::Aws { action, resource, error: e }
}

/// `DescribeServiceDeployments` of one service deployment.
pub async fn describe(
    s: &ServiceRef<'_>,
    arn: &str,
    deadline: Deadline,
) -> Result<Lookup<ServiceDeployment>, EcsError> {
    let out = retry("DescribeServiceDeployments", Backoff::CONTROL_PLANE, deadline, is_transient, || {
        s.ecs.describe_service_deployments().service_deployment_arns(arn).send()
    })
    .await;
    let out = match out {
        Ok(out) => out,
        Err(e) => {
            let info = ErrorInfo::from_sdk(&e);
            if says_absent(&info) {
                return Ok(Lookup::Absent(info.code.unwrap_or_default()));
            }
            return Err(aws_error("describe service deployment", format!("{arn} of {}", s.describe()), info));
        }
    };
    if let Some(found) =
        out.service_deployments.unwrap_or_default().into_iter().find(|d| d.service_deployment_arn() == Some(arn))
    {
        return Ok(Lookup::Found(found));
    }
    let reason =
        out.failures.unwrap_or_default().into_iter().find_map(|f| f.reason).unwrap_or_else(|| "MISSING".into());
    Err(aws_error(
        "describe service deployment",
        format!("{arn} of {}", s.describe()),
        ErrorInfo { code: Some(reason), message: "ECS does not know this service deployment".into() },
    ))
}

/// The service deployment that deploys `task_definition` to the service: the newest of those
/// created since `since` (all of ECS's history when `None`) whose target service revision runs
/// that task definition. `Found(None)`: none does.
pub async fn find(
    s: &ServiceRef<'_>,
    task_definition: &str,
    since: Option<DateTime>,
    deadline: Deadline,
) -> Result<Lookup<Option<String>>, EcsError> {
    let resource = || s.describe();
    let mut briefs = Vec::new();
    let mut token: Option<String> = None;
    // ECS keeps 90 days of service deployments; five pages of 100 are far more than one deploy needs.
    for _ in 0..5 {
        let out = retry("ListServiceDeployments", Backoff::CONTROL_PLANE, deadline, is_transient, || {
            s.ecs
                .list_service_deployments()
                .cluster(s.cluster)
                .service(s.service)
                .set_created_at(since.map(|t| CreatedAt::builder().after(t).build()))
                .max_results(100)
                .set_next_token(token.clone())
                .send()
        })
        .await;
        let out = match out {
            Ok(out) => out,
            Err(e) => {
                let info = ErrorInfo::from_sdk(&e);
                if says_absent(&info) {
                    return Ok(Lookup::Absent(info.code.unwrap_or_default()));
                }
                return Err(aws_error("list the service deployments of", resource(), info));
            }
        };
        briefs.extend(out.service_deployments.unwrap_or_default());
        token = out.next_token;
        if token.is_none() {
            break;
        }
    }
    // Newest first, whatever order ECS listed them in.
    briefs.sort_by_key(|b| std::cmp::Reverse(b.created_at().map(|t| (t.secs(), t.subsec_nanos()))));
    briefs.truncate(20);
    let revisions: Vec<String> = {
        let mut r: Vec<String> =
            briefs.iter().filter_map(|b| b.target_service_revision_arn().map(str::to_owned)).collect();
        r.sort();
        r.dedup();
        r
    };
    if revisions.is_empty() {
        return Ok(Lookup::Found(None));
    }
    let runs = revision_task_definitions(s, &revisions, deadline).await?;
    Ok(Lookup::Found(briefs.into_iter().find_map(|b| {
        let td = runs.get(b.target_service_revision_arn()?)?;
        (td == task_definition).then(|| b.service_deployment_arn().map(str::to_owned)).flatten()
    })))
}

/// The task definition each service revision runs (`DescribeServiceRevisions`, at most 20).
pub async fn revision_task_definitions(
    s: &ServiceRef<'_>,
    revisions: &[String],
    deadline: Deadline,
) -> Result<HashMap<String, String>, EcsError> {
    if revisions.is_empty() {
        return Ok(HashMap::new());
    }
    let asked: Vec<String> = revisions.iter().take(20).cloned().collect();
    let out = retry("DescribeServiceRevisions", Backoff::CONTROL_PLANE, deadline, is_transient, || {
        s.ecs.describe_service_revisions().set_service_revision_arns(Some(asked.clone())).send()
    })
    .await
    .map_err(|e| aws_error("describe the service revisions of", s.describe(), ErrorInfo::from_sdk(&e)))?;
    Ok(out
        .service_revisions
        .unwrap_or_default()
        .into_iter()
        .filter_map(|r| Some((r.service_revision_arn?, r.task_definition?)))
        .collect())
}

/// How a stop request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// ECS took it: the deployment is rolling back (or was already stopping or rolling back).
    Stopping,
    /// The deployment had finished (ConflictException): nothing was stopped.
    Finished,
    /// ECS does not know the deployment.
    NotFound,
}

/// `StopServiceDeployment` with stop type ROLLBACK. Sending it again changes nothing more: a
/// deployment rolling back goes on rolling back, and a finished one is a conflict.
pub async fn stop_with_rollback(s: &ServiceRef<'_>, arn: &str, deadline: Deadline) -> Result<Stop, EcsError> {
    let out = retry("StopServiceDeployment", Backoff::CONTROL_PLANE, deadline, is_transient, || {
        s.ecs
            .stop_service_deployment()
            .service_deployment_arn(arn)
            .stop_type(StopServiceDeploymentStopType::Rollback)
            .send()
    })
    .await;
    match out {
        Ok(_) => Ok(Stop::Stopping),
        Err(e) if e.as_service_error().is_some_and(|x| x.is_conflict_exception()) => Ok(Stop::Finished),
        Err(e) if e.as_service_error().is_some_and(|x| x.is_service_deployment_not_found_exception()) => {
            Ok(Stop::NotFound)
        }
        Err(e) => Err(aws_error(
            "stop (with rollback) service deployment",
            format!("{arn} of {}", s.describe()),
            ErrorInfo::from_sdk(&e),
        )),
    }
}

/// The last part of a service deployment's ARN, as the console shows it.
pub fn short_id(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// The short name of a task definition ARN: `family:revision`.
pub fn short_td(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// Whether ECS is still at it: pending, in progress, or stopping or rolling back.
pub fn is_ongoing(status: &ServiceDeploymentStatus) -> bool {
    !matches!(
        status,
        ServiceDeploymentStatus::Successful
            | ServiceDeploymentStatus::Stopped
            | ServiceDeploymentStatus::RollbackSuccessful
            | ServiceDeploymentStatus::RollbackFailed
    )
}

/// A service deployment, in words.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub arn: String,
    pub status: ServiceDeploymentStatus,
    pub stage: Option<ServiceDeploymentLifecycleStage>,
    /// The production traffic on the target revision, in percent (traffic-shifting strategies).
    pub weight: Option<f64>,
    pub running: i32,
    pub requested: i32,
    pub strategy: Option<String>,
    pub reason: Option<String>,
    /// (failed tasks, threshold) once the circuit breaker triggered.
    pub breaker: Option<(i32, i32)>,
    pub alarms: Vec<String>,
    pub rollback_reason: Option<String>,
    pub rollback_started: Option<DateTime>,
    pub stopped_at: Option<DateTime>,
    pub updated_at: Option<DateTime>,
}

impl View {
    pub fn of(d: &ServiceDeployment) -> View {
        let target = d.target_service_revision();
        let breaker = d
            .deployment_circuit_breaker()
            .filter(|b| b.status() == Some(&ServiceDeploymentRollbackMonitorsStatus::Triggered));
        let alarms = d.alarms().map(|a| a.triggered_alarm_names().to_vec()).unwrap_or_default();
        View {
            arn: d.service_deployment_arn().unwrap_or_default().to_owned(),
            status: d.status().cloned().unwrap_or(ServiceDeploymentStatus::Pending),
            stage: d.lifecycle_stage().cloned(),
            weight: target.and_then(|t| t.requested_production_traffic_weight()),
            running: target.map(|t| t.running_task_count()).unwrap_or(0),
            requested: target.map(|t| t.requested_task_count()).unwrap_or(0),
            strategy: d.deployment_configuration().and_then(|c| c.strategy()).map(|s| s.as_str().to_owned()),
            reason: d.status_reason().map(str::to_owned),
            breaker: breaker.map(|b| (b.failure_count(), b.threshold())),
            alarms,
            rollback_reason: d.rollback().and_then(|r| r.reason()).map(str::to_owned),
            rollback_started: d.rollback().and_then(|r| r.started_at()).copied(),
            stopped_at: d.stopped_at().copied(),
            updated_at: d.updated_at().copied(),
        }
    }

    pub fn id(&self) -> &str {
        short_id(&self.arn)
    }

    /// Where it stands, e.g. "service deployment X (BLUE_GREEN) IN_PROGRESS, stage BAKE_TIME,
    /// production traffic 100% on web:5 and 0% on web:4, 2 of 2 tasks running".
    pub fn progress(&self, new: &str, previous: &str) -> String {
        let mut text = format!("service deployment {}", self.id());
        if let Some(strategy) = &self.strategy {
            text.push_str(&format!(" ({strategy})"));
        }
        text.push_str(&format!(" of {} {}", short_td(new), self.status.as_str()));
        if let Some(stage) = &self.stage {
            text.push_str(&format!(", stage {}", stage.as_str()));
        }
        if let Some(w) = self.weight {
            text.push_str(&format!(
                ", production traffic {}% on {} and {}% on {}",
                percent(w),
                short_td(new),
                percent(100.0 - w),
                short_td(previous)
            ));
        }
        text.push_str(&format!(", {} of {} new tasks running", self.running, self.requested));
        text
    }

    /// Why it failed, in ECS's words: its reason, the circuit breaker's count, the alarms, the rollback's reason.
    pub fn failure(&self) -> String {
        let mut parts = vec![format!("service deployment {} {}", self.id(), self.status.as_str())];
        if let Some(reason) = &self.reason {
            parts.push(reason.clone());
        }
        if let Some((failed, threshold)) = self.breaker {
            parts.push(format!("circuit breaker: {failed} tasks failed (threshold {threshold})"));
        }
        if !self.alarms.is_empty() {
            parts.push(format!("alarms in ALARM: {}", self.alarms.join(", ")));
        }
        if let Some(r) = self.rollback_reason.as_ref().filter(|r| Some(*r) != self.reason.as_ref()) {
            parts.push(format!("rollback: {r}"));
        }
        parts.join("; ")
    }

    /// A rough share of the work done, for CodePipeline's progress.
    pub fn percent_complete(&self) -> u8 {
        use ServiceDeploymentLifecycleStage as S;
        let shift = self.weight.unwrap_or(0.0).clamp(0.0, 100.0);
        let p = match &self.stage {
            Some(S::ReconcileService | S::PreScaleUp) => 15.0,
            Some(S::ScaleUp) => 25.0,
            Some(S::PostScaleUp | S::TestTrafficShift | S::PostTestTrafficShift) => 35.0,
            Some(S::ProductionTrafficShift) => 40.0 + shift * 0.4,
            Some(S::PostProductionTrafficShift) => 80.0,
            Some(S::BakeTime) => 85.0,
            Some(S::CleanUp) => 90.0,
            _ if self.requested > 0 => 10.0 + 70.0 * f64::from(self.running) / f64::from(self.requested),
            _ => 10.0,
        };
        p.clamp(10.0, 95.0) as u8
    }
}

fn percent(w: f64) -> String {
    let rounded = (w * 10.0).round() / 10.0;
    if rounded.fract() == 0.0 {
        format!("{rounded:.0}")
    } else {
        format!("{rounded:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::types::{
        Rollback, ServiceDeploymentAlarms, ServiceDeploymentCircuitBreaker, ServiceRevisionSummary,
    };

    #[test]
    fn a_view_says_stage_traffic_and_ecs_reasons() {
        let d = ServiceDeployment::builder()
            .service_deployment_arn("arn:aws:ecs:us-east-1:222222222222:service-deployment/prod/web/abc")
            .status(ServiceDeploymentStatus::InProgress)
            .lifecycle_stage(ServiceDeploymentLifecycleStage::ProductionTrafficShift)
            .target_service_revision(
                ServiceRevisionSummary::builder()
                    .arn("r")
                    .requested_task_count(2)
                    .running_task_count(2)
                    .requested_production_traffic_weight(12.5)
                    .build(),
            )
            .build();
        let v = View::of(&d);
        let new = "arn:aws:ecs:us-east-1:222222222222:task-definition/web:5";
        let old = "arn:aws:ecs:us-east-1:222222222222:task-definition/web:4";
        assert_eq!(
            v.progress(new, old),
            "service deployment abc of web:5 IN_PROGRESS, stage PRODUCTION_TRAFFIC_SHIFT, production traffic 12.5% on web:5 and 87.5% on web:4, 2 of 2 new tasks running"
        );
        assert_eq!(v.percent_complete(), 45);

        let failed = ServiceDeployment::builder()
            .service_deployment_arn("arn:aws:ecs:us-east-1:222222222222:service-deployment/prod/web/def")
            .status(ServiceDeploymentStatus::RollbackSuccessful)
            .status_reason("ECS deployment circuit breaker: tasks failed to start.")
            .deployment_circuit_breaker(
                ServiceDeploymentCircuitBreaker::builder()
                    .status(ServiceDeploymentRollbackMonitorsStatus::Triggered)
                    .failure_count(3)
                    .threshold(3)
                    .build(),
            )
            .alarms(
                ServiceDeploymentAlarms::builder()
                    .status(ServiceDeploymentRollbackMonitorsStatus::Triggered)
                    .triggered_alarm_names("web-5xx")
                    .build(),
            )
            .rollback(Rollback::builder().reason("ECS deployment circuit breaker: tasks failed to start.").build())
            .build();
        assert_eq!(
            View::of(&failed).failure(),
            "service deployment def ROLLBACK_SUCCESSFUL; ECS deployment circuit breaker: tasks failed to start.; circuit breaker: 3 tasks failed (threshold 3); alarms in ALARM: web-5xx"
        );
    }
}

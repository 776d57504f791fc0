//! The Lambda deployment, step by step: idempotency check, code update, wait, publish, then the
//! alias: all at once, or shifted step by step with the alarms watched, put back if one fires.

use crate::alias::{read_alias, route_alias, upsert_alias, AliasState};
use crate::function::{code_state, update_code, wait_for_update, FunctionRef, Settled};
use crate::shift::schedule;
use crate::version::publish_version;
use crate::{Package, UpdaterError};
use crossdeploy_alarms::firing_alarm;
use crossdeploy_aws::Deadline;
use crossdeploy_protocol::{outputs, DeploymentStrategy, Outcome, PipelineContext};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often the alarms are read while traffic shifts.
pub const ALARM_POLL: Duration = Duration::from_secs(15);

/// What gates a deployment: how traffic moves, and the alarms that can stop it.
#[derive(Debug, Clone, Copy)]
pub struct Gates<'a> {
    pub strategy: DeploymentStrategy,
    pub alarms: &'a [String],
    /// CloudWatch in the target account (through the assumed role).
    pub cloudwatch: &'a aws_sdk_cloudwatch::Client,
}

/// What a deployment hands back to resume from when it must stop before the deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "Phase")]
pub enum LambdaState {
    /// The code was uploaded; Lambda was still applying it.
    WaitingForUpdate {
        #[serde(rename = "CodeSha256")]
        code_sha256: String,
        /// The alias as it stood before (guards the alias move and gives PreviousVersion).
        #[serde(rename = "AliasVersion")]
        alias_version: Option<String>,
        #[serde(rename = "AliasRevisionId")]
        alias_revision_id: Option<String>,
    },
    /// The new version is published and takes part of the alias's traffic.
    Shifting(Shifting),
}

/// Traffic on its way to the new version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shifting {
    #[serde(rename = "CodeSha256")]
    pub code_sha256: String,
    #[serde(rename = "NewVersion")]
    pub new_version: String,
    #[serde(rename = "PreviousVersion")]
    pub previous_version: String,
    /// Index into the strategy's steps of the step in force.
    #[serde(rename = "Step")]
    pub step: usize,
    /// When the step began (seconds since the epoch): its bake time counts from here.
    #[serde(rename = "StepStartedAt")]
    pub step_started_at: u64,
    /// The alias's RevisionId after crossdeploy's last move: no one else may have moved it.
    #[serde(rename = "AliasRevisionId")]
    pub alias_revision_id: Option<String>,
    #[serde(rename = "AliasArn")]
    pub alias_arn: String,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Deploys `package` to the function behind the alias, as `gates` say.
///
/// If the alias already points at a version with the package's CodeSha256, nothing changes and
/// the outputs are those of the deployment that put it there. An alarm already in ALARM, or one
/// that does not exist, stops the deployment before anything changes.
pub async fn deploy_package(
    f: &FunctionRef<'_>,
    gates: &Gates<'_>,
    package: &Package,
    ctx: &PipelineContext,
    deadline: Deadline,
) -> Result<Outcome, UpdaterError> {
    let alias = read_alias(f, deadline).await?;
    if let Some(a) = &alias {
        let live = code_state(f, Some(&a.version), deadline).await?;
        if live.code_sha256.as_deref() == Some(package.sha256.as_str()) && a.routing.is_empty() {
            tracing::info!(function = f.function, alias = f.alias, version = %a.version, "alias already serves this package; nothing to do");
            let previous = a.recorded_previous.clone().unwrap_or_else(|| a.version.clone());
            return Ok(succeeded(
                f,
                &a.version,
                &previous,
                a.arn.as_deref().unwrap_or_default(),
                &package.sha256,
                true,
            ));
        }
    }
    if let Some(firing) = firing_alarm(gates.cloudwatch, gates.alarms, f.account, deadline).await? {
        return Err(UpdaterError::AlarmBeforeStart {
            alarm: firing.name,
            reason: firing.reason,
            account: f.account.to_owned(),
            function: f.function.to_owned(),
        });
    }
    let latest = code_state(f, None, deadline).await?;
    tracing::info!(function = f.function, bytes = package.bytes.len(), sha256 = %package.sha256, "updating function code");
    update_code(f, package, latest.revision_id.as_deref(), deadline).await?;
    let state = LambdaState::WaitingForUpdate {
        code_sha256: package.sha256.clone(),
        alias_version: alias.as_ref().map(|a| a.version.clone()),
        alias_revision_id: alias.as_ref().and_then(|a| a.revision_id.clone()),
    };
    resume(f, gates, state, ctx, deadline).await
}

/// Resumes a deployment from the state an earlier invocation handed back.
pub async fn resume(
    f: &FunctionRef<'_>,
    gates: &Gates<'_>,
    state: LambdaState,
    ctx: &PipelineContext,
    deadline: Deadline,
) -> Result<Outcome, UpdaterError> {
    match state {
        LambdaState::WaitingForUpdate { code_sha256, alias_version, alias_revision_id } => {
            publish_and_move(
                f,
                gates,
                &code_sha256,
                alias_version.as_deref(),
                alias_revision_id.as_deref(),
                ctx,
                deadline,
            )
            .await
        }
        LambdaState::Shifting(shifting) => shift(f, gates, shifting, ctx, deadline).await,
    }
}

async fn publish_and_move(
    f: &FunctionRef<'_>,
    gates: &Gates<'_>,
    code_sha256: &str,
    alias_version: Option<&str>,
    alias_revision_id: Option<&str>,
    ctx: &PipelineContext,
    deadline: Deadline,
) -> Result<Outcome, UpdaterError> {
    let revision_id = match wait_for_update(f, deadline).await? {
        Settled::StillInProgress => {
            let state = LambdaState::WaitingForUpdate {
                code_sha256: code_sha256.to_owned(),
                alias_version: alias_version.map(str::to_owned),
                alias_revision_id: alias_revision_id.map(str::to_owned),
            };
            return Ok(Outcome::InProgress {
                summary: format!("Lambda is still applying the new code to {}", f.describe()),
                percent_complete: 30,
                state: serde_json::to_value(&state).unwrap_or_default(),
            });
        }
        Settled::Done { revision_id, code_sha256: now } => {
            if now.as_deref() != Some(code_sha256) {
                return Err(f.changed(
                    "the code",
                    crossdeploy_aws::ErrorInfo {
                        code: None,
                        message: format!(
                            "$LATEST has CodeSha256 {} instead of the uploaded {code_sha256}",
                            now.as_deref().unwrap_or("(none)")
                        ),
                    },
                ));
            }
            revision_id
        }
    };
    let version = publish_version(f, code_sha256, revision_id.as_deref(), ctx, deadline).await?;
    let steps = schedule(gates.strategy);
    match (alias_version, steps.first()) {
        (Some(previous), Some(first)) => {
            tracing::info!(function = f.function, alias = f.alias, version = %version, percent = first.percent, "shifting traffic");
            let moved =
                route_alias(f, previous, Some((&version, first.percent)), alias_revision_id, ctx, previous, deadline)
                    .await?;
            let shifting = Shifting {
                code_sha256: code_sha256.to_owned(),
                new_version: version,
                previous_version: previous.to_owned(),
                step: 0,
                step_started_at: now_secs(),
                alias_revision_id: moved.revision_id,
                alias_arn: moved.arn,
            };
            shift(f, gates, shifting, ctx, deadline).await
        }
        _ => {
            if !steps.is_empty() {
                tracing::info!(
                    function = f.function,
                    alias = f.alias,
                    "the alias is new: it takes the whole traffic at once"
                );
            }
            let before = alias_version.map(|v| AliasState {
                version: v.to_owned(),
                arn: None,
                revision_id: alias_revision_id.map(str::to_owned),
                recorded_previous: None,
                routing: Vec::new(),
            });
            let alias_arn = upsert_alias(f, before.as_ref(), &version, ctx, deadline).await?;
            let previous = alias_version.unwrap_or("none");
            tracing::info!(function = f.function, alias = f.alias, version = %version, previous, "alias moved");
            Ok(succeeded(f, &version, previous, &alias_arn, code_sha256, false))
        }
    }
}

/// Moves traffic through the strategy's steps, reading the alarms every [`ALARM_POLL`]. An alarm
/// in ALARM puts the alias back on the previous version with no routing and fails the deployment.
/// Near the deadline it hands back its state; the bake time counts on across invocations.
async fn shift(
    f: &FunctionRef<'_>,
    gates: &Gates<'_>,
    mut s: Shifting,
    ctx: &PipelineContext,
    deadline: Deadline,
) -> Result<Outcome, UpdaterError> {
    let steps = schedule(gates.strategy);
    loop {
        let Shifting {
            code_sha256,
            new_version,
            previous_version,
            step,
            step_started_at,
            alias_revision_id,
            alias_arn,
        } = &mut s;
        if let Some(firing) = firing_alarm(gates.cloudwatch, gates.alarms, f.account, deadline).await? {
            tracing::error!(function = f.function, alarm = %firing.name, "alarm in ALARM: restoring the alias");
            route_alias(f, previous_version, None, alias_revision_id.as_deref(), ctx, previous_version, deadline)
                .await?;
            return Err(UpdaterError::AlarmFired(Box::new(crate::error::AlarmFired {
                alarm: firing.name,
                reason: firing.reason,
                account: f.account.to_owned(),
                function: f.function.to_owned(),
                alias: f.alias.to_owned(),
                restored: previous_version.clone(),
                new: new_version.clone(),
            })));
        }
        let bake = steps.get(*step).map(|s| s.bake).unwrap_or_default();
        let due = *step_started_at + bake.as_secs();
        let now = now_secs();
        if now >= due {
            match steps.get(*step + 1) {
                Some(next) => {
                    let moved = route_alias(
                        f,
                        previous_version,
                        Some((new_version, next.percent)),
                        alias_revision_id.as_deref(),
                        ctx,
                        previous_version,
                        deadline,
                    )
                    .await?;
                    tracing::info!(function = f.function, alias = f.alias, percent = next.percent, "next step");
                    *step += 1;
                    *step_started_at = now;
                    *alias_revision_id = moved.revision_id;
                    continue;
                }
                None => {
                    let moved = route_alias(
                        f,
                        new_version,
                        None,
                        alias_revision_id.as_deref(),
                        ctx,
                        previous_version,
                        deadline,
                    )
                    .await?;
                    let arn = if moved.arn.is_empty() { alias_arn.clone() } else { moved.arn };
                    tracing::info!(function = f.function, alias = f.alias, version = %new_version, "traffic shifted wholly");
                    return Ok(succeeded(f, new_version, previous_version, &arn, code_sha256, false));
                }
            }
        }
        let wait = Duration::from_secs(due - now).min(ALARM_POLL);
        if deadline.remaining() <= wait + Duration::from_secs(5) {
            let percent = steps.get(*step).map(|s| s.percent).unwrap_or(100);
            let summary = format!(
                "{percent}% of alias {}'s traffic on version {new_version} of {}; next step in {} s unless an alarm fires",
                f.alias,
                f.describe(),
                due - now
            );
            let progress = 40 + (55 * (*step + 1) / (steps.len() + 1)) as u8;
            return Ok(Outcome::InProgress {
                summary,
                percent_complete: progress,
                state: serde_json::to_value(LambdaState::Shifting(s.clone())).unwrap_or_default(),
            });
        }
        tokio::time::sleep(wait).await;
    }
}

fn succeeded(
    f: &FunctionRef<'_>,
    version: &str,
    previous: &str,
    alias_arn: &str,
    sha: &str,
    unchanged: bool,
) -> Outcome {
    let summary = if unchanged {
        format!(
            "alias {} of {} already serves version {version} with this code; nothing changed",
            f.alias,
            f.describe()
        )
    } else {
        format!("alias {} of {}: version {previous} -> {version}", f.alias, f.describe())
    };
    let outputs = BTreeMap::from([
        (outputs::FUNCTION_VERSION.to_owned(), version.to_owned()),
        (outputs::PREVIOUS_VERSION.to_owned(), previous.to_owned()),
        (outputs::ALIAS_ARN.to_owned(), alias_arn.to_owned()),
        (outputs::CODE_SHA256.to_owned(), sha.to_owned()),
    ]);
    Outcome::Succeeded { summary, outputs }
}

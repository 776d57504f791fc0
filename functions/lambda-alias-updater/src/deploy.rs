//! The Lambda deployment, step by step: idempotency check, code update, wait, publish, wait for
//! the version, then the alias: all at once, or shifted step by step with the alarms watched.
//! Once the alias has moved, every failure puts it back on the previous version (or says
//! exactly what it serves when that fails too).

use crate::alias::{read_alias, route_alias, upsert_alias, AliasState};
use crate::function::{code_state, stage_if_needed, update_code, wait_for_update, FunctionRef, Settled};
use crate::shift::{schedule, weight};
use crate::version::{publish_version, wait_for_version, Readiness};
use crate::{Package, UpdaterError};
use crossdeploy_alarms::firing_alarm;
use crossdeploy_aws::Deadline;
use crossdeploy_protocol::{outputs, DeploymentStrategy, Outcome, PipelineContext, Serving, Stands};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often the alarms are read while traffic shifts.
pub const ALARM_POLL: Duration = Duration::from_secs(15);
/// Time kept before the deadline to put the alias back when a shift fails.
pub const RESTORE_RESERVE: Duration = Duration::from_secs(10);
/// A change of the target starts only with this long (besides [`RESTORE_RESERVE`]) before the
/// deadline; otherwise the state is handed back and a later invocation makes it.
pub const MUTATION_MARGIN: Duration = Duration::from_secs(5);

/// What gates a deployment: how traffic moves, and the alarms that can stop it.
#[derive(Debug, Clone, Copy)]
pub struct Gates<'a> {
    pub strategy: DeploymentStrategy,
    pub alarms: &'a [String],
    /// CloudWatch in the target account (through the assumed role).
    pub cloudwatch: &'a aws_sdk_cloudwatch::Client,
    /// The target account's staging bucket, for packages over the direct upload threshold.
    pub staging: Option<&'a crate::Staging>,
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
    /// The version is published; Lambda was still preparing it (SnapStart makes a snapshot).
    WaitingForVersion {
        #[serde(rename = "CodeSha256")]
        code_sha256: String,
        #[serde(rename = "Version")]
        version: String,
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

/// The state to hand back, as an outcome that says the work goes on.
fn in_progress(summary: String, percent: u8, state: Option<&LambdaState>, stands: Option<Stands>) -> Outcome {
    Outcome::InProgress {
        summary,
        percent_complete: percent,
        state: state.and_then(|s| serde_json::to_value(s).ok()).unwrap_or(serde_json::Value::Null),
        stands,
    }
}

/// Whether there is time left to start a change of the target (and put it back if need be).
fn time_to_change(deadline: Deadline) -> bool {
    deadline.remaining() >= MUTATION_MARGIN + RESTORE_RESERVE
}

/// Deploys `package` to the function behind the alias, as `gates` say.
///
/// If the alias already points at a version with the package's CodeSha256, nothing changes and
/// the outputs are those of the deployment that put it there; if it is shifting traffic to such
/// a version for this same deployment (a re-run after an answer was lost), the shift goes on.
/// An alias on `$LATEST`, an alarm already in ALARM, or one that does not exist, stops the
/// deployment before anything changes.
pub async fn deploy_package(
    f: &FunctionRef<'_>,
    gates: &Gates<'_>,
    package: &Package,
    ctx: &PipelineContext,
    deadline: Deadline,
) -> Result<Outcome, UpdaterError> {
    // What stands, the code it serves and what $LATEST holds, read at once. (The alias's own
    // version is read again should the alias have moved between the reads, or not exist.)
    let (alias, latest, live) =
        tokio::join!(read_alias(f, deadline), code_state(f, None, deadline), code_state(f, Some(f.alias), deadline));
    let alias = alias?;
    if let Some(a) = &alias {
        refuse_latest(f, a)?;
        let live = match live {
            Ok(live) if live.version.as_deref() == Some(a.version.as_str()) => live,
            _ => code_state(f, Some(&a.version), deadline).await?,
        };
        if live.code_sha256.as_deref() == Some(package.sha256.as_str()) && a.routing.is_empty() {
            tracing::info!(function = f.function, alias = f.alias, version = %a.version, "alias already serves this package; nothing to do");
            // What stood before is what the alias's description records only if this deployment
            // wrote it (an earlier attempt whose answer was lost); otherwise this deployment
            // changed nothing, and what stands stood before it.
            let previous = match &a.recorded_deployment {
                Some(d) if d == f.deployment => a.recorded_previous.clone().unwrap_or_else(|| a.version.clone()),
                _ => a.version.clone(),
            };
            return Ok(succeeded(
                f,
                &a.version,
                &previous,
                a.arn.as_deref().unwrap_or_default(),
                &package.sha256,
                true,
            ));
        }
        if let Some(shifting) = own_shift(f, gates, a, &package.sha256, deadline).await? {
            tracing::info!(function = f.function, alias = f.alias, version = %shifting.new_version, step = shifting.step, "this deployment's shift is under way; going on with it");
            return resume(f, gates, LambdaState::Shifting(shifting), ctx, deadline).await;
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
    let latest = latest?;
    refuse_other_package_type(f, package, latest.package_type.as_ref())?;
    let mut settled = None;
    if latest.code_sha256.as_deref() == Some(package.sha256.as_str()) {
        tracing::info!(function = f.function, "$LATEST holds this package already (an earlier attempt uploaded it)");
    } else {
        // A package over the direct upload threshold is staged first (that takes a while), so
        // that the time left is judged after it; a later run finds the staged object.
        let staged = stage_if_needed(f, package, gates.staging, deadline).await?;
        if !time_to_change(deadline) {
            return Ok(in_progress(format!("about to update the code of {}", f.describe()), 10, None, None));
        }
        tracing::info!(function = f.function, bytes = package.len, sha256 = %package.sha256, direct = package.direct(), "updating function code");
        settled = update_code(f, package, staged.as_ref(), latest.revision_id.as_deref(), deadline).await?;
    }
    let before = Before {
        version: alias.as_ref().map(|a| a.version.clone()),
        revision_id: alias.as_ref().and_then(|a| a.revision_id.clone()),
    };
    publish_and_move(f, gates, &package.sha256, before, ctx, deadline, settled).await
}

/// An alias on `$LATEST` is refused: crossdeploy moves aliases between published versions, and a
/// rollback must never "restore" `$LATEST` (whatever code it holds by then).
fn refuse_latest(f: &FunctionRef<'_>, alias: &AliasState) -> Result<(), UpdaterError> {
    if alias.version == "$LATEST" || alias.routing.iter().any(|(v, _)| v == "$LATEST") {
        return Err(UpdaterError::Configuration(format!(
            "alias {} of {} points at $LATEST, which is not a version: crossdeploy moves aliases between published versions, and rollback must never restore $LATEST. Point the alias at a published version first (aws lambda update-alias --function-version <N>), then retry",
            f.alias,
            f.describe()
        )));
    }
    Ok(())
}

/// A zip package for a container-image function, or an image for a zip function, is refused
/// before anything changes, saying which the function is.
fn refuse_other_package_type(
    f: &FunctionRef<'_>,
    package: &Package,
    package_type: Option<&aws_sdk_lambda::types::PackageType>,
) -> Result<(), UpdaterError> {
    use aws_sdk_lambda::types::PackageType;
    match (package.as_image(), package_type) {
        (Some(image), Some(PackageType::Zip)) => Err(UpdaterError::Configuration(format!(
            "{} takes a zip package (PackageType Zip), but ImageFile names the container image {}; remove ImageFile and give the package (the artifact, or ArtifactPath inside it)",
            f.describe(),
            image.named
        ))),
        (None, Some(PackageType::Image)) => Err(UpdaterError::Configuration(format!(
            "{} is a container-image function (PackageType Image), but the artifact gives a zip package; set ImageFile to the artifact's image file (imageDetail.json from an ECR source action)",
            f.describe()
        ))),
        _ => Ok(()),
    }
}

/// This deployment's own shift, found on the alias: its description names the deployment, and
/// the one version it routes traffic to holds the package.
async fn own_shift(
    f: &FunctionRef<'_>,
    gates: &Gates<'_>,
    alias: &AliasState,
    code_sha256: &str,
    deadline: Deadline,
) -> Result<Option<Shifting>, UpdaterError> {
    let [(new_version, w)] = alias.routing.as_slice() else { return Ok(None) };
    if alias.recorded_deployment.as_deref() != Some(f.deployment) {
        return Ok(None);
    }
    if code_state(f, Some(new_version), deadline).await?.code_sha256.as_deref() != Some(code_sha256) {
        return Ok(None);
    }
    let steps = schedule(gates.strategy);
    let step = steps.iter().position(|s| (weight(s.percent) - w).abs() < 1e-6).unwrap_or(0);
    Ok(Some(Shifting {
        code_sha256: code_sha256.to_owned(),
        new_version: new_version.clone(),
        previous_version: alias.version.clone(),
        step,
        // The step's bake counts again from now: never shorter than asked.
        step_started_at: now_secs(),
        alias_revision_id: alias.revision_id.clone(),
        alias_arn: alias.arn.clone().unwrap_or_default(),
    }))
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
            let before = Before { version: alias_version, revision_id: alias_revision_id };
            publish_and_move(f, gates, &code_sha256, before, ctx, deadline, None).await
        }
        LambdaState::WaitingForVersion { code_sha256, version, alias_version, alias_revision_id } => {
            let before = Before { version: alias_version, revision_id: alias_revision_id };
            move_when_ready(f, gates, &code_sha256, &version, true, before, ctx, deadline).await
        }
        LambdaState::Shifting(shifting) => {
            let (new, previous) = (shifting.new_version.clone(), shifting.previous_version.clone());
            let shifting = match reconcile(f, gates, shifting, deadline).await? {
                Reconciled::Go(s) => s,
                Reconciled::Done(outcome) => return Ok(outcome),
            };
            match shift(f, gates, shifting, ctx, deadline).await {
                Ok(outcome) => Ok(outcome),
                Err(e) => Err(put_back(f, e, &new, Some(&previous), ctx, deadline).await),
            }
        }
    }
}

/// Where a shift resumed from a state handed back stands on the alias.
enum Reconciled {
    /// Go on shifting from this (the state as handed back, or as the alias shows it now).
    Go(Shifting),
    /// An invocation whose answer was lost finished the shift: the alias serves the new version.
    Done(Outcome),
}

/// A shift is resumed from the alias as it is, not only as the state remembers it: an
/// invocation whose answer was lost may have moved it on by steps, or all the way.
async fn reconcile(
    f: &FunctionRef<'_>,
    gates: &Gates<'_>,
    s: Shifting,
    deadline: Deadline,
) -> Result<Reconciled, UpdaterError> {
    let Some(alias) = read_alias(f, deadline).await? else { return Ok(Reconciled::Go(s)) };
    if alias.revision_id.is_some() && alias.revision_id == s.alias_revision_id {
        return Ok(Reconciled::Go(s));
    }
    let ours = alias.recorded_deployment.as_deref() == Some(f.deployment);
    if ours && alias.is(&s.new_version, None) {
        tracing::info!(function = f.function, alias = f.alias, version = %s.new_version, "an earlier invocation finished the shift");
        let arn = alias.arn.clone().unwrap_or_else(|| s.alias_arn.clone());
        return Ok(Reconciled::Done(succeeded(f, &s.new_version, &s.previous_version, &arn, &s.code_sha256, false)));
    }
    match own_shift(f, gates, &alias, &s.code_sha256, deadline).await? {
        Some(now) if now.new_version == s.new_version && now.step >= s.step => {
            tracing::info!(
                function = f.function,
                alias = f.alias,
                step = now.step,
                "an earlier invocation moved the shift on"
            );
            Ok(Reconciled::Go(now))
        }
        _ => Ok(Reconciled::Go(s)),
    }
}

/// The alias as it stood before the deployment.
#[derive(Debug, Clone)]
struct Before {
    version: Option<String>,
    revision_id: Option<String>,
}

/// Once the code update settles (`settled`: the update's own answer said it had), publishes the
/// version and moves the alias.
#[allow(clippy::too_many_arguments)]
async fn publish_and_move(
    f: &FunctionRef<'_>,
    gates: &Gates<'_>,
    code_sha256: &str,
    before: Before,
    ctx: &PipelineContext,
    deadline: Deadline,
    settled: Option<Settled>,
) -> Result<Outcome, UpdaterError> {
    let waiting = || LambdaState::WaitingForUpdate {
        code_sha256: code_sha256.to_owned(),
        alias_version: before.version.clone(),
        alias_revision_id: before.revision_id.clone(),
    };
    let settled = match settled {
        Some(settled) => settled,
        None => wait_for_update(f, deadline).await?,
    };
    let revision_id = match settled {
        Settled::StillInProgress => {
            let summary = format!("Lambda is still applying the new code to {}", f.describe());
            return Ok(in_progress(summary, 30, Some(&waiting()), None));
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
    if !time_to_change(deadline) {
        let summary = format!("the new code of {} is ready to publish", f.describe());
        return Ok(in_progress(summary, 35, Some(&waiting()), None));
    }
    let published = publish_version(f, code_sha256, revision_id.as_deref(), ctx, deadline).await?;
    move_when_ready(f, gates, code_sha256, &published.version, published.pending, before, ctx, deadline).await
}

/// Waits for the new version to be Active, then moves the alias to it as the strategy says. Any
/// failure once the alias may have moved puts it back.
#[allow(clippy::too_many_arguments)]
async fn move_when_ready(
    f: &FunctionRef<'_>,
    gates: &Gates<'_>,
    code_sha256: &str,
    version: &str,
    pending: bool,
    before: Before,
    ctx: &PipelineContext,
    deadline: Deadline,
) -> Result<Outcome, UpdaterError> {
    let waiting = || LambdaState::WaitingForVersion {
        code_sha256: code_sha256.to_owned(),
        version: version.to_owned(),
        alias_version: before.version.clone(),
        alias_revision_id: before.revision_id.clone(),
    };
    if pending && wait_for_version(f, version, deadline).await? == Readiness::StillPending {
        let summary = format!("version {version} of {} is still being prepared by Lambda", f.describe());
        return Ok(in_progress(summary, 38, Some(&waiting()), None));
    }
    if !time_to_change(deadline) {
        let summary = format!("version {version} of {} is ready; the alias moves next", f.describe());
        return Ok(in_progress(summary, 40, Some(&waiting()), None));
    }
    match first_move(f, gates, code_sha256, version, &before, ctx, deadline).await {
        Ok(outcome) => Ok(outcome),
        Err(e) => Err(put_back(f, e, version, before.version.as_deref(), ctx, deadline).await),
    }
}

/// The alias's first move: the first step of the shift, or all of the traffic at once.
async fn first_move(
    f: &FunctionRef<'_>,
    gates: &Gates<'_>,
    code_sha256: &str,
    version: &str,
    before: &Before,
    ctx: &PipelineContext,
    deadline: Deadline,
) -> Result<Outcome, UpdaterError> {
    let steps = schedule(gates.strategy);
    let work = deadline.less(RESTORE_RESERVE);
    match (before.version.as_deref(), steps.first()) {
        (Some(previous), Some(first)) => {
            tracing::info!(
                function = f.function,
                alias = f.alias,
                version,
                percent = first.percent,
                "shifting traffic"
            );
            let moved = route_alias(
                f,
                previous,
                Some((version, first.percent)),
                before.revision_id.as_deref(),
                ctx,
                previous,
                work,
            )
            .await?;
            let shifting = Shifting {
                code_sha256: code_sha256.to_owned(),
                new_version: version.to_owned(),
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
            let current = before.version.as_ref().map(|v| AliasState {
                version: v.to_owned(),
                arn: None,
                revision_id: before.revision_id.clone(),
                recorded_previous: None,
                recorded_deployment: None,
                routing: Vec::new(),
            });
            let alias_arn = upsert_alias(f, current.as_ref(), version, ctx, work).await?;
            let previous = before.version.as_deref().unwrap_or("none");
            tracing::info!(function = f.function, alias = f.alias, version, previous, "alias moved");
            Ok(succeeded(f, version, previous, &alias_arn, code_sha256, false))
        }
    }
}

/// Moves traffic through the strategy's steps, reading the alarms every [`ALARM_POLL`]. An alarm
/// in ALARM, or any other failure, is returned as an error (the caller puts the alias back).
/// Near the deadline it hands back its state; the bake time counts on across invocations.
async fn shift(
    f: &FunctionRef<'_>,
    gates: &Gates<'_>,
    mut s: Shifting,
    ctx: &PipelineContext,
    deadline: Deadline,
) -> Result<Outcome, UpdaterError> {
    let steps = schedule(gates.strategy);
    let work = deadline.less(RESTORE_RESERVE);
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
        if let Some(firing) = firing_alarm(gates.cloudwatch, gates.alarms, f.account, work).await? {
            tracing::error!(function = f.function, alarm = %firing.name, "alarm in ALARM: the alias goes back");
            return Err(UpdaterError::AlarmFired(Box::new(crate::error::AlarmFired {
                alarm: firing.name,
                reason: firing.reason,
                account: f.account.to_owned(),
                function: f.function.to_owned(),
                alias: f.alias.to_owned(),
                new: new_version.clone(),
            })));
        }
        let bake = steps.get(*step).map(|s| s.bake).unwrap_or_default();
        let due = *step_started_at + bake.as_secs();
        let now = now_secs();
        if now >= due && time_to_change(deadline) {
            match steps.get(*step + 1) {
                Some(next) => {
                    let moved = route_alias(
                        f,
                        previous_version,
                        Some((new_version, next.percent)),
                        alias_revision_id.as_deref(),
                        ctx,
                        previous_version,
                        work,
                    )
                    .await?;
                    tracing::info!(function = f.function, alias = f.alias, percent = next.percent, "next step");
                    *step += 1;
                    *step_started_at = now;
                    *alias_revision_id = moved.revision_id;
                    continue;
                }
                None => {
                    let moved =
                        route_alias(f, new_version, None, alias_revision_id.as_deref(), ctx, previous_version, work)
                            .await?;
                    let arn = if moved.arn.is_empty() { alias_arn.clone() } else { moved.arn };
                    tracing::info!(function = f.function, alias = f.alias, version = %new_version, "traffic shifted wholly");
                    return Ok(succeeded(f, new_version, previous_version, &arn, code_sha256, false));
                }
            }
        }
        // Bake until the deadline leaves only the time to act (and put back): then hand back.
        let room = deadline.remaining().saturating_sub(MUTATION_MARGIN + RESTORE_RESERVE);
        let wait = Duration::from_secs(due.saturating_sub(now)).min(ALARM_POLL).min(room);
        if room < Duration::from_secs(1) {
            let percent = steps.get(*step).map(|s| s.percent).unwrap_or(100);
            let summary = format!(
                "{percent}% of alias {}'s traffic on version {new_version} of {}; next step in {} s unless an alarm fires",
                f.alias,
                f.describe(),
                due.saturating_sub(now)
            );
            let progress = 40 + (55 * (*step + 1) / (steps.len() + 1)) as u8;
            let stands = Stands {
                previous: previous_version.clone(),
                deployed: new_version.clone(),
                serving: Serving::Shifting,
                detail: format!(
                    "alias {} points at version {previous_version} with {percent}% on version {new_version}",
                    f.alias
                ),
                service_deployment_arn: None,
            };
            return Ok(in_progress(summary, progress, Some(&LambdaState::Shifting(s.clone())), Some(stands)));
        }
        tokio::time::sleep(wait).await;
    }
}

/// A deployment failed once the alias may have moved: put the alias back on `previous` with no
/// routing if the new version takes any of its traffic (guarded by the RevisionId just read),
/// and say what the alias serves either way.
async fn put_back(
    f: &FunctionRef<'_>,
    error: UpdaterError,
    new_version: &str,
    previous: Option<&str>,
    ctx: &PipelineContext,
    deadline: Deadline,
) -> UpdaterError {
    let previous_text = previous.unwrap_or("none").to_owned();
    let stands = |serving, detail: String| Stands {
        previous: previous_text.clone(),
        deployed: new_version.to_owned(),
        serving,
        detail,
        service_deployment_arn: None,
    };
    let alias = match read_alias(f, deadline).await {
        Ok(a) => a,
        Err(e) => {
            let detail = format!("alias {} could not be read to put it back ({e})", f.alias);
            return UpdaterError::left(error, stands(Serving::Unknown, detail));
        }
    };
    let Some(alias) = alias else {
        return UpdaterError::left(error, stands(Serving::Previous, format!("alias {} does not exist", f.alias)));
    };
    if alias.weight_of(new_version) <= 0.0 {
        let detail = format!(
            "alias {} points at {}: version {new_version} takes none of its traffic",
            f.alias,
            alias.describe()
        );
        return UpdaterError::left(error, stands(Serving::Previous, detail));
    }
    let serving = if alias.is(new_version, None) { Serving::Deployed } else { Serving::Shifting };
    let Some(previous) = previous else {
        let detail = format!(
            "alias {} was created by this deployment and points at {}; nothing stood before it",
            f.alias,
            alias.describe()
        );
        return UpdaterError::left(error, stands(serving, detail));
    };
    tracing::warn!(function = f.function, alias = f.alias, previous, now = %alias.describe(), "putting the alias back");
    match route_alias(f, previous, None, alias.revision_id.as_deref(), ctx, previous, deadline).await {
        Ok(_) => {
            let detail = format!(
                "alias {} was restored to version {previous} with no routing; version {new_version} gets no traffic",
                f.alias
            );
            UpdaterError::left(error, stands(Serving::Previous, detail))
        }
        Err(e) => {
            let detail = format!(
                "alias {} points at {}, and putting it back on version {previous} failed ({e})",
                f.alias,
                alias.describe()
            );
            UpdaterError::left(error, stands(serving, detail))
        }
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

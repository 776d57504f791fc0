//! Which deployments an event condemns, and what rolling one back restores — decided from the
//! ledger's records alone (pure functions), never guessed from version numbers.

use crossdeploy_ledger::{DeploymentRecord, DeploymentStatus};
use crossdeploy_protocol::Serving;
use std::time::Duration;

/// What to do with one condemned deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// Put `restore` back, guarded by the target still running `deployed`.
    Restore { restore: String, deployed: String },
    /// The ledger shows a later deployment of the target: someone deployed since. Recorded, not touched.
    LeftAlone(String),
    /// Nothing to roll back (the deployment failed without changing the target, or replaced
    /// nothing). Not recorded.
    NotApplicable(String),
    /// The deployment is still in progress: its worker's own gates apply, or (a failed stage)
    /// it is rolled back when it ends.
    StillRunning(String),
    /// Its run died before it heard what the target serves: put back only what the target
    /// itself shows this deployment did (the updater reads its mark: the alias's description,
    /// the revision's tag).
    RestoreByMark,
}

/// Whether a deployment may have left something of its own on the target: it succeeded, or it
/// failed (or died) after changing the target without putting back what stood before — as its
/// updater reported it, never assumed from "failed".
pub fn left_changes(record: &DeploymentRecord) -> bool {
    match record.status {
        DeploymentStatus::Succeeded => true,
        DeploymentStatus::Failed | DeploymentStatus::InProgress => {
            record.deployed.is_some() && !matches!(record.serving, None | Some(Serving::Previous))
        }
    }
}

/// The choice for `condemned`, given its target's deployments (`history`, any order) and an
/// explicit version / task definition to restore (a direct request's). `alive`: an in-progress
/// deployment's run still holds the target (else it died, and is judged by what it recorded).
pub fn choose(
    condemned: &DeploymentRecord,
    history: &[DeploymentRecord],
    restore: Option<&str>,
    alive: bool,
) -> Choice {
    let id = &condemned.deployment_id;
    match condemned.status {
        DeploymentStatus::Succeeded => {}
        DeploymentStatus::InProgress if alive => {
            return Choice::StillRunning(format!(
                "deployment {id} of {} is still in progress; its own alarm checks and failure handling apply",
                condemned.target
            ))
        }
        // Died (its lease lapsed) before its updater's word on the target reached the ledger.
        DeploymentStatus::InProgress if condemned.serving.is_none() => return Choice::RestoreByMark,
        // Ended with its updater unheard and no word before: what it did is on the target only.
        DeploymentStatus::Failed | DeploymentStatus::InProgress
            if condemned.serving == Some(Serving::Unknown) && condemned.deployed.is_none() =>
        {
            return Choice::RestoreByMark
        }
        DeploymentStatus::Failed | DeploymentStatus::InProgress if !left_changes(condemned) => {
            let how = if condemned.status == DeploymentStatus::Failed { "failed" } else { "died" };
            return Choice::NotApplicable(format!(
                "deployment {id} of {} {how} and left the target on what stood before ({})",
                condemned.target,
                match condemned.serving {
                    Some(Serving::Previous) => "its updater put back what it had changed",
                    _ => "it had changed nothing",
                }
            ));
        }
        DeploymentStatus::Failed | DeploymentStatus::InProgress => {}
    }
    let Some(deployed) = condemned.deployed.clone().filter(|d| !d.is_empty()) else {
        return Choice::NotApplicable(format!("deployment {id} recorded no deployed version or task definition"));
    };
    let restore = match restore.map(str::to_owned).or_else(|| condemned.previous.clone()) {
        Some(r) if !r.is_empty() && r != "none" => r,
        _ => {
            return Choice::NotApplicable(format!(
                "deployment {id} created {}: nothing stood before it to restore",
                condemned.target
            ))
        }
    };
    if restore == deployed {
        return Choice::NotApplicable(format!(
            "deployment {id} left {} on {deployed}: nothing to restore",
            condemned.target
        ));
    }
    let later = history.iter().filter(|r| r.deployment_id != *id && r.started_at > condemned.started_at).find(|r| {
        // A later deployment that failed before it changed anything does not count.
        r.status != DeploymentStatus::Failed || r.deployed.is_some()
    });
    if let Some(later) = later {
        return Choice::LeftAlone(format!(
            "{} was deployed again since, by deployment {} ({}, {}): someone deployed since, so deployment {id} is left alone",
            condemned.target,
            later.deployment_id,
            later.pipeline.describe(),
            later.status.as_str()
        ));
    }
    Choice::Restore { restore, deployed }
}

/// The deployments an alarm condemns: per target, the latest one the alarm guarded, if the event
/// came within its bake window (from its start to `bake_window` after it finished). `records`
/// are the deployments into the alarm's account and region, newest first.
pub fn condemned_by_alarm<'a>(
    records: &'a [DeploymentRecord],
    alarm: &str,
    event_ms: u64,
    bake_window: Duration,
) -> (Vec<&'a DeploymentRecord>, Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    let (mut condemned, mut passed) = (Vec::new(), Vec::new());
    for r in records.iter().filter(|r| r.alarm_names.iter().any(|a| a == alarm)) {
        if !seen.insert(r.target.clone()) {
            continue; // an older deployment of a target already decided
        }
        let end = r.finished_at.unwrap_or(u64::MAX).saturating_add(bake_window.as_millis() as u64);
        // EventBridge times have whole seconds: the event may fall anywhere in its second.
        if event_ms.saturating_add(999) < r.started_at {
            passed.push(format!("deployment {} of {} started after the alarm fired", r.deployment_id, r.target));
        } else if event_ms > end {
            passed.push(format!(
                "deployment {} of {} finished more than {} minutes before the alarm fired: outside its bake window",
                r.deployment_id,
                r.target,
                bake_window.as_secs() / 60
            ));
        } else {
            condemned.push(r);
        }
    }
    (condemned, passed)
}

/// The deployment an ECS deployment failure belongs to, among its service's deployments (newest
/// first): the one whose DeploymentId output names it; else the latest, if crossdeploy was still
/// following it when ECS failed it (no DeploymentId recorded yet: in progress, or failed by the
/// updater). A failure of a deployment crossdeploy did not make belongs to none.
pub fn ecs_failure_record<'a>(
    history: &'a [DeploymentRecord],
    ecs_deployment_id: &str,
) -> Option<&'a DeploymentRecord> {
    let named = |r: &&DeploymentRecord| {
        r.outputs.get(crossdeploy_protocol::outputs::DEPLOYMENT_ID).map(String::as_str) == Some(ecs_deployment_id)
    };
    history.iter().find(named).or_else(|| {
        history.first().filter(|r| {
            r.status != DeploymentStatus::Succeeded
                && !r.outputs.contains_key(crossdeploy_protocol::outputs::DEPLOYMENT_ID)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossdeploy_ledger::TargetKey;
    use crossdeploy_protocol::PipelineContext;

    fn record(id: &str, started_at: u64, status: DeploymentStatus, previous: &str, deployed: &str) -> DeploymentRecord {
        DeploymentRecord {
            deployment_id: id.into(),
            target: TargetKey::lambda("222222222222", "us-east-1", "orders", "live"),
            role_arn: "arn:aws:iam::222222222222:role/crossdeploy-target".into(),
            pipeline: PipelineContext {
                job_id: id.into(),
                pipeline_name: Some("orders".into()),
                execution_id: Some(format!("exec-{id}")),
                ..Default::default()
            },
            started_at,
            finished_at: Some(started_at + 1_000),
            status,
            previous: (!previous.is_empty()).then(|| previous.into()),
            deployed: (!deployed.is_empty()).then(|| deployed.into()),
            outputs: Default::default(),
            message: None,
            alarm_names: vec!["orders-5xx".into()],
            serving: None,
            rollback: None,
        }
    }

    #[test]
    fn a_succeeded_deployment_restores_what_the_ledger_recorded_before_it() {
        let d = record("a", 100, DeploymentStatus::Succeeded, "7", "9");
        assert_eq!(
            choose(&d, std::slice::from_ref(&d), None, false),
            Choice::Restore { restore: "7".into(), deployed: "9".into() }
        );
        // Never a guess from version numbers: 7 is restored, not 8.
        assert_eq!(
            choose(&d, std::slice::from_ref(&d), Some("5"), false),
            Choice::Restore { restore: "5".into(), deployed: "9".into() }
        );
    }

    #[test]
    fn someone_deployed_since_leaves_the_target_alone() {
        let d = record("a", 100, DeploymentStatus::Succeeded, "7", "9");
        let newer = record("b", 200, DeploymentStatus::Succeeded, "9", "10");
        let Choice::LeftAlone(why) = choose(&d, &[newer.clone(), d.clone()], None, false) else {
            panic!("expected LeftAlone")
        };
        assert!(why.contains("deployment b") && why.contains("someone deployed since"), "{why}");
        // A later deployment still running counts too.
        let running = record("c", 300, DeploymentStatus::InProgress, "", "");
        assert!(matches!(choose(&d, &[running, d.clone()], None, false), Choice::LeftAlone(_)));
        // A later deployment that failed before deploying anything does not.
        let failed = record("c", 300, DeploymentStatus::Failed, "", "");
        assert!(matches!(choose(&d, &[failed, d.clone()], None, false), Choice::Restore { .. }));
        // An older one does not either.
        let older = record("z", 50, DeploymentStatus::Succeeded, "6", "7");
        assert!(matches!(choose(&d, &[d.clone(), older], None, false), Choice::Restore { .. }));
    }

    #[test]
    fn failed_or_first_deployments_that_changed_nothing_have_nothing_to_roll_back() {
        for d in [
            record("a", 100, DeploymentStatus::Failed, "7", ""),
            record("a", 100, DeploymentStatus::Succeeded, "none", "1"),
            record("a", 100, DeploymentStatus::Succeeded, "", "1"),
            record("a", 100, DeploymentStatus::Succeeded, "3", "3"),
        ] {
            assert!(matches!(choose(&d, std::slice::from_ref(&d), None, false), Choice::NotApplicable(_)), "{d:?}");
        }
        let running = record("a", 100, DeploymentStatus::InProgress, "", "");
        assert!(matches!(choose(&running, std::slice::from_ref(&running), None, true), Choice::StillRunning(_)));
    }

    #[test]
    fn a_failed_or_dead_deployment_is_judged_by_what_its_updater_said_stands_never_by_failed() {
        // Failed after the alias shifted, and the restore failed too: the ledger says so.
        let mut half = record("a", 100, DeploymentStatus::Failed, "7", "8");
        half.serving = Some(Serving::Shifting);
        assert_eq!(
            choose(&half, std::slice::from_ref(&half), None, false),
            Choice::Restore { restore: "7".into(), deployed: "8".into() }
        );
        half.serving = Some(Serving::Unknown);
        assert!(matches!(choose(&half, std::slice::from_ref(&half), None, false), Choice::Restore { .. }));
        // Failed and put back: nothing to do.
        half.serving = Some(Serving::Previous);
        let Choice::NotApplicable(why) = choose(&half, std::slice::from_ref(&half), None, false) else { panic!() };
        assert!(why.contains("put back"), "{why}");
        // A run that died mid-shift (its lease lapsed) is judged the same way.
        let mut dead = record("a", 100, DeploymentStatus::InProgress, "7", "8");
        dead.serving = Some(Serving::Shifting);
        assert!(matches!(choose(&dead, std::slice::from_ref(&dead), None, false), Choice::Restore { .. }));
        assert!(matches!(choose(&dead, std::slice::from_ref(&dead), None, true), Choice::StillRunning(_)));
        // One that died before anything of the target reached the ledger: by the target's mark.
        let unheard = record("a", 100, DeploymentStatus::InProgress, "", "");
        assert_eq!(choose(&unheard, std::slice::from_ref(&unheard), None, false), Choice::RestoreByMark);
        // One that failed with its updater never heard from (killed every time): by the mark too.
        let mut silent = record("a", 100, DeploymentStatus::Failed, "", "");
        silent.serving = Some(Serving::Unknown);
        assert_eq!(choose(&silent, std::slice::from_ref(&silent), None, false), Choice::RestoreByMark);
    }

    #[test]
    fn an_alarm_condemns_the_latest_guarded_deployment_of_each_target_within_its_bake_window() {
        let hour = Duration::from_secs(3600);
        let old = record("old", 1_000, DeploymentStatus::Succeeded, "6", "7");
        let new = record("new", 10_000, DeploymentStatus::Succeeded, "7", "8");
        let mut unguarded = record("other", 20_000, DeploymentStatus::Succeeded, "1", "2");
        unguarded.target = TargetKey::lambda("222222222222", "us-east-1", "billing", "live");
        unguarded.alarm_names = vec!["billing-5xx".into()];
        let records = vec![unguarded, new.clone(), old];
        // Within the window: the newest guarded deployment of the target only.
        let (c, _) = condemned_by_alarm(&records, "orders-5xx", 11_000 + 3_000_000, hour);
        assert_eq!(c.iter().map(|r| r.deployment_id.as_str()).collect::<Vec<_>>(), vec!["new"]);
        // Past the window (finished at 11 000 ms, window 1 h).
        let (c, passed) = condemned_by_alarm(&records, "orders-5xx", 11_000 + 3_600_001, hour);
        assert!(c.is_empty());
        assert!(passed[0].contains("outside its bake window"), "{passed:?}");
        // A window of 5 minutes, configurable.
        let (c, _) = condemned_by_alarm(&records, "orders-5xx", 11_000 + 301_000, Duration::from_secs(300));
        assert!(c.is_empty());
        // Before the deployment started: not its fault.
        let (c, _) = condemned_by_alarm(&records, "orders-5xx", 5_000, hour);
        assert!(c.is_empty(), "the older deployment is not condemned in place of the newer");
        // An event time in whole seconds may precede the start by less than a second.
        let (c, _) = condemned_by_alarm(&records, "orders-5xx", 9_001, hour);
        assert_eq!(c.len(), 1);
        let (c, _) = condemned_by_alarm(&records, "orders-5xx", 8_999, hour);
        assert!(c.is_empty(), "the older deployment is not condemned in place of the newer");
        // An alarm nothing names condemns nothing.
        assert!(condemned_by_alarm(&records, "nobody", 11_000, hour).0.is_empty());
    }

    #[test]
    fn an_ecs_failure_belongs_to_the_deployment_that_made_it_or_to_none() {
        let with_id = |id: &str, status, ecs: &str| {
            let mut r = record(id, 100, status, "1", "2");
            r.outputs.insert("DeploymentId".into(), ecs.into());
            r
        };
        let older = with_id("a", DeploymentStatus::Succeeded, "ecs-svc/1");
        let newer = with_id("b", DeploymentStatus::Succeeded, "ecs-svc/2");
        let history = vec![newer.clone(), older.clone()];
        assert_eq!(ecs_failure_record(&history, "ecs-svc/1").map(|r| r.deployment_id.as_str()), Some("a"));
        // Someone else's deployment of the service failed: not crossdeploy's to record.
        assert_eq!(ecs_failure_record(&history, "ecs-svc/9"), None);
        // crossdeploy was following it: no DeploymentId yet, the latest record is it.
        let followed = record("c", 300, DeploymentStatus::Failed, "2", "");
        let history = vec![followed, newer];
        assert_eq!(ecs_failure_record(&history, "ecs-svc/3").map(|r| r.deployment_id.as_str()), Some("c"));
        assert_eq!(ecs_failure_record(&[], "ecs-svc/3"), None);
    }
}

//! Rollback: put the alias back on the version that stood before a deployment — only while it
//! still points wholly at what that deployment published.

use crate::{read_alias, route_alias, AliasState, FunctionRef, UpdaterError};
use crossdeploy_aws::Deadline;
use crossdeploy_protocol::{LambdaRollback, Outcome, PipelineContext, RollbackResult};

/// What a rollback does to an alias in a given state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guard {
    /// The alias points wholly at the deployed version, or at the version to restore with part
    /// of its traffic on the deployed one (a shift left half-way): move it back, no routing.
    Restore,
    /// The alias points wholly at the version to restore already.
    AlreadyRestored,
    /// The alias is on something else (or is shifting traffic): someone deployed since.
    LeftAlone(String),
}

/// The guard of a rollback, from what the alias points at now.
pub fn guard(alias: &AliasState, spec: &LambdaRollback) -> Guard {
    let routed =
        || alias.routing.iter().map(|(v, w)| format!("{v} ({:.0}%)", w * 100.0)).collect::<Vec<_>>().join(", ");
    let half_shifted = alias.routing.len() == 1 && alias.routing[0].0 == spec.deployed_version;
    match (alias.version.as_str(), alias.routing.is_empty()) {
        (v, true) if v == spec.restore_version => Guard::AlreadyRestored,
        (v, true) if v == spec.deployed_version => Guard::Restore,
        (v, false) if v == spec.restore_version && half_shifted => Guard::Restore,
        (v, true) => Guard::LeftAlone(format!(
            "it points at version {v}, not at version {} that crossdeploy deployed: someone deployed since",
            spec.deployed_version
        )),
        (v, false) => Guard::LeftAlone(format!(
            "it points at version {v} with traffic shifting to {}: a deployment is under way",
            routed()
        )),
    }
}

/// A rollback by mark: what `deployment` left is known only from the alias itself. Its
/// description must name the deployment (the last to move it); then what it records as the
/// previous version is restored, over the version of the deployment's that takes traffic.
pub fn by_mark(alias: &AliasState, deployment: &str) -> Result<LambdaRollback, String> {
    if alias.recorded_deployment.as_deref() != Some(deployment) {
        return Err(format!(
            "it shows no move by deployment {deployment} (its description names {}): nothing of that deployment stands",
            alias.recorded_deployment.as_deref().unwrap_or("no crossdeploy deployment")
        ));
    }
    let previous = alias
        .recorded_previous
        .clone()
        .filter(|p| p != "none" && !p.is_empty())
        .ok_or_else(|| format!("deployment {deployment} created it: nothing stood before it to restore"))?;
    let deployed = match alias.routing.as_slice() {
        [(v, _)] if alias.version == previous => v.clone(),
        _ => alias.version.clone(),
    };
    Ok(LambdaRollback {
        function_name: String::new(),
        alias: String::new(),
        restore_version: previous,
        deployed_version: deployed,
    })
}

/// Restores `spec.restore_version` on the alias if the guard allows, with the alias's RevisionId
/// as precondition. Never creates an alias. A spec with no deployed version is a rollback by
/// mark of `deployment` (see [`by_mark`]).
pub async fn rollback_alias(
    f: &FunctionRef<'_>,
    spec: &LambdaRollback,
    deployment: Option<&str>,
    request_id: &str,
    reason: &str,
    deadline: Deadline,
) -> Result<Outcome, UpdaterError> {
    let alias = read_alias(f, deadline).await?.ok_or_else(|| {
        UpdaterError::Configuration(format!(
            "alias {} of {} does not exist: there is nothing to roll back",
            f.alias,
            f.describe()
        ))
    })?;
    let name = format!("alias {} of {}", f.alias, f.describe());
    let marked;
    let spec = match (spec.deployed_version.is_empty(), deployment) {
        (false, _) => spec,
        (true, Some(d)) => match by_mark(&alias, d) {
            Ok(s) => {
                marked = s;
                &marked
            }
            Err(why) => {
                let summary = format!("{name} left alone: {why} ({reason})");
                tracing::info!(%request_id, %summary, "rollback by mark: nothing of the deployment stands");
                return Ok(RollbackResult::AlreadyRestored.outcome(summary, &alias.version));
            }
        },
        (true, None) => {
            return Err(UpdaterError::BadRequest(
                "a rollback with no deployed version must name its deployment".to_owned(),
            ))
        }
    };
    match guard(&alias, spec) {
        Guard::AlreadyRestored => {
            let summary = format!("{name} points at version {} already; nothing changed", spec.restore_version);
            tracing::info!(%request_id, %summary, "rollback: already restored");
            Ok(RollbackResult::AlreadyRestored.outcome(summary, &alias.version))
        }
        Guard::LeftAlone(why) => {
            let summary = format!("{name} left alone: {why} ({reason})");
            tracing::warn!(%request_id, %summary, "rollback: left alone");
            Ok(RollbackResult::LeftAlone.outcome(summary, &alias.version))
        }
        Guard::Restore => {
            let ctx = PipelineContext { job_id: request_id.to_owned(), ..Default::default() };
            route_alias(
                f,
                &spec.restore_version,
                None,
                alias.revision_id.as_deref(),
                &ctx,
                &spec.deployed_version,
                deadline,
            )
            .await?;
            let summary = format!(
                "{name} restored to version {} (was {}), no routing: {reason}",
                spec.restore_version, spec.deployed_version
            );
            tracing::info!(%request_id, %summary, "rollback: restored");
            Ok(RollbackResult::Restored.outcome(summary, &spec.restore_version))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alias(version: &str, routing: &[(&str, f64)]) -> AliasState {
        AliasState {
            version: version.into(),
            arn: None,
            revision_id: None,
            recorded_previous: None,
            recorded_deployment: None,
            routing: routing.iter().map(|(v, w)| (v.to_string(), *w)).collect(),
        }
    }

    fn spec() -> LambdaRollback {
        LambdaRollback {
            function_name: "orders".into(),
            alias: "live".into(),
            restore_version: "3".into(),
            deployed_version: "4".into(),
        }
    }

    #[test]
    fn the_alias_is_restored_only_while_it_points_wholly_at_the_deployed_version() {
        assert_eq!(guard(&alias("4", &[]), &spec()), Guard::Restore);
        assert_eq!(guard(&alias("3", &[]), &spec()), Guard::AlreadyRestored);
        let Guard::LeftAlone(why) = guard(&alias("5", &[]), &spec()) else { panic!("expected LeftAlone") };
        assert!(why.contains("version 5") && why.contains("someone deployed since"), "{why}");
        let Guard::LeftAlone(why) = guard(&alias("4", &[("5", 0.1)]), &spec()) else { panic!("expected LeftAlone") };
        // By mark: the alias's description names the deployment and what stood before it.
        let mut marked = alias("3", &[("4", 0.1)]);
        marked.recorded_deployment = Some("job-7".into());
        marked.recorded_previous = Some("3".into());
        let s = by_mark(&marked, "job-7").unwrap();
        assert_eq!((s.restore_version.as_str(), s.deployed_version.as_str()), ("3", "4"));
        assert_eq!(guard(&marked, &s), Guard::Restore);
        marked.version = "4".into();
        marked.routing.clear();
        let s = by_mark(&marked, "job-7").unwrap();
        assert_eq!((s.restore_version.as_str(), s.deployed_version.as_str()), ("3", "4"));
        assert!(by_mark(&marked, "job-8").unwrap_err().contains("no move by deployment job-8"));
        assert!(why.contains("5 (10%)"), "{why}");
        // A shift to the deployed version left half-way (its updater's restore failed): put back.
        assert_eq!(guard(&alias("3", &[("4", 0.1)]), &spec()), Guard::Restore);
        assert!(matches!(guard(&alias("3", &[("5", 0.1)]), &spec()), Guard::LeftAlone(_)));
    }
}

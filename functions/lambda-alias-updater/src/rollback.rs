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

/// Restores `spec.restore_version` on the alias if the guard allows, with the alias's RevisionId
/// as precondition. Never creates an alias.
pub async fn rollback_alias(
    f: &FunctionRef<'_>,
    spec: &LambdaRollback,
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
        assert!(why.contains("5 (10%)"), "{why}");
        // A shift to the deployed version left half-way (its updater's restore failed): put back.
        assert_eq!(guard(&alias("3", &[("4", 0.1)]), &spec()), Guard::Restore);
        assert!(matches!(guard(&alias("3", &[("5", 0.1)]), &spec()), Guard::LeftAlone(_)));
    }
}

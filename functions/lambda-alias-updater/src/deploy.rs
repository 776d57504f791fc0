//! The Lambda deployment, step by step: idempotency check, code update, wait, publish, alias.

use crate::alias::{read_alias, upsert_alias, AliasState};
use crate::function::{code_state, update_code, wait_for_update, FunctionRef, Settled};
use crate::version::publish_version;
use crate::{Package, UpdaterError};
use crossdeploy_aws::Deadline;
use crossdeploy_protocol::{outputs, Outcome, PipelineContext};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
}

/// Deploys `package` to the function behind the alias, all at once.
///
/// If the alias already points at a version with the package's CodeSha256, nothing changes and
/// the outputs are those of the deployment that put it there.
pub async fn deploy_package(
    f: &FunctionRef<'_>,
    package: &Package,
    ctx: &PipelineContext,
    deadline: Deadline,
) -> Result<Outcome, UpdaterError> {
    let alias = read_alias(f, deadline).await?;
    if let Some(a) = &alias {
        let live = code_state(f, Some(&a.version), deadline).await?;
        if live.code_sha256.as_deref() == Some(package.sha256.as_str()) {
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
    let latest = code_state(f, None, deadline).await?;
    tracing::info!(function = f.function, bytes = package.bytes.len(), sha256 = %package.sha256, "updating function code");
    update_code(f, package, latest.revision_id.as_deref(), deadline).await?;
    let state = LambdaState::WaitingForUpdate {
        code_sha256: package.sha256.clone(),
        alias_version: alias.as_ref().map(|a| a.version.clone()),
        alias_revision_id: alias.as_ref().and_then(|a| a.revision_id.clone()),
    };
    finish(f, state, ctx, deadline).await
}

/// Resumes a deployment from the state an earlier invocation handed back.
pub async fn resume(
    f: &FunctionRef<'_>,
    state: LambdaState,
    ctx: &PipelineContext,
    deadline: Deadline,
) -> Result<Outcome, UpdaterError> {
    finish(f, state, ctx, deadline).await
}

async fn finish(
    f: &FunctionRef<'_>,
    state: LambdaState,
    ctx: &PipelineContext,
    deadline: Deadline,
) -> Result<Outcome, UpdaterError> {
    let LambdaState::WaitingForUpdate { code_sha256, alias_version, alias_revision_id } = &state;
    let revision_id = match wait_for_update(f, deadline).await? {
        Settled::StillInProgress => {
            return Ok(Outcome::InProgress {
                summary: format!("Lambda is still applying the new code to {}", f.describe()),
                percent_complete: 40,
                state: serde_json::to_value(&state).unwrap_or_default(),
            })
        }
        Settled::Done { revision_id, code_sha256: now } => {
            if now.as_deref() != Some(code_sha256.as_str()) {
                return Err(UpdaterError::Changed {
                    what: "the code",
                    function: f.function.to_owned(),
                    account: f.account.to_owned(),
                    error: crossdeploy_aws::ErrorInfo {
                        code: None,
                        message: format!(
                            "$LATEST has CodeSha256 {} instead of the uploaded {code_sha256}",
                            now.as_deref().unwrap_or("(none)")
                        ),
                    },
                });
            }
            revision_id
        }
    };
    let version = publish_version(f, code_sha256, revision_id.as_deref(), ctx, deadline).await?;
    let before = alias_version.as_ref().map(|v| AliasState {
        version: v.clone(),
        arn: None,
        revision_id: alias_revision_id.clone(),
        recorded_previous: None,
    });
    let alias_arn = upsert_alias(f, before.as_ref(), &version, ctx, deadline).await?;
    let previous = alias_version.as_deref().unwrap_or("none");
    tracing::info!(function = f.function, alias = f.alias, version = %version, previous, "alias moved");
    Ok(succeeded(f, &version, previous, &alias_arn, code_sha256, false))
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

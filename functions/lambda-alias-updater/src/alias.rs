//! Reading and moving the alias.

use crate::version::bounded;
use crate::{FunctionRef, UpdaterError};
use aws_sdk_lambda::types::AliasRoutingConfiguration;
use crossdeploy_aws::{retry, Backoff, Deadline, ErrorInfo};
use crossdeploy_protocol::PipelineContext;
use std::collections::HashMap;

/// What the alias points at.
#[derive(Debug, Clone, PartialEq)]
pub struct AliasState {
    pub version: String,
    pub arn: Option<String>,
    pub revision_id: Option<String>,
    /// The version crossdeploy moved the alias away from, as recorded in the alias's description.
    pub recorded_previous: Option<String>,
    /// Versions other than `version` taking part of the traffic, with their weights.
    pub routing: Vec<(String, f64)>,
}

const PREVIOUS_MARK: &str = "; previous version ";

/// `GetAlias`; `None` when the alias does not exist yet.
pub async fn read_alias(f: &FunctionRef<'_>, deadline: Deadline) -> Result<Option<AliasState>, UpdaterError> {
    let result = retry(
        "GetAlias",
        Backoff::CONTROL_PLANE,
        deadline,
        |e: &aws_sdk_lambda::error::SdkError<aws_sdk_lambda::operation::get_alias::GetAliasError>| {
            e.as_service_error().is_some_and(|s| s.is_too_many_requests_exception())
        },
        || f.lambda.get_alias().function_name(f.function).name(f.alias).send(),
    )
    .await;
    match result {
        Ok(out) => Ok(Some(AliasState {
            version: out.function_version.unwrap_or_default(),
            arn: out.alias_arn,
            revision_id: out.revision_id,
            routing: out
                .routing_config
                .as_ref()
                .and_then(|r| r.additional_version_weights.clone())
                .map(|w| w.into_iter().collect())
                .unwrap_or_default(),
            recorded_previous: out
                .description
                .as_deref()
                .and_then(|d| d.rsplit_once(PREVIOUS_MARK))
                .map(|(_, v)| v.to_owned()),
        })),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => {
            // Either the alias or the function is missing; the function's absence shows at the next call.
            Ok(None)
        }
        Err(e) => Err(f.aws_error("read the alias of", ErrorInfo::from_sdk(&e), false)),
    }
}

/// The alias after a move: its ARN and new RevisionId (the guard of the next move).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    pub arn: String,
    pub revision_id: Option<String>,
}

/// Points the existing alias at `main`, with `extra` (a version and its percent of the traffic)
/// or no routing, guarded by the alias's RevisionId.
pub async fn route_alias(
    f: &FunctionRef<'_>,
    main: &str,
    extra: Option<(&str, u8)>,
    revision_id: Option<&str>,
    ctx: &PipelineContext,
    previous: &str,
    deadline: Deadline,
) -> Result<Moved, UpdaterError> {
    let weights: HashMap<String, f64> =
        extra.map(|(v, p)| (v.to_owned(), crate::shift::weight(p))).into_iter().collect();
    let description = bounded_description(ctx, previous);
    let out = retry(
        "UpdateAlias",
        Backoff::CONTROL_PLANE,
        deadline,
        |e: &aws_sdk_lambda::error::SdkError<aws_sdk_lambda::operation::update_alias::UpdateAliasError>| {
            e.as_service_error()
                .is_some_and(|s| s.is_resource_conflict_exception() || s.is_too_many_requests_exception())
        },
        || {
            f.lambda
                .update_alias()
                .function_name(f.function)
                .name(f.alias)
                .function_version(main)
                .routing_config(
                    AliasRoutingConfiguration::builder().set_additional_version_weights(Some(weights.clone())).build(),
                )
                .set_revision_id(revision_id.map(str::to_owned))
                .description(&description)
                .send()
        },
    )
    .await
    .map_err(|e| {
        if e.as_service_error().is_some_and(|s| s.is_precondition_failed_exception()) {
            return f.changed("the alias", ErrorInfo::from_sdk(&e));
        }
        let not_found = e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception());
        f.aws_error("move the alias of", ErrorInfo::from_sdk(&e), not_found)
    })?;
    Ok(Moved { arn: out.alias_arn.unwrap_or_default(), revision_id: out.revision_id })
}

/// Points the alias wholly at `version` with no routing left, guarded by the alias's RevisionId;
/// creates it when it does not exist. Returns the alias ARN.
pub async fn upsert_alias(
    f: &FunctionRef<'_>,
    current: Option<&AliasState>,
    version: &str,
    ctx: &PipelineContext,
    deadline: Deadline,
) -> Result<String, UpdaterError> {
    if let Some(alias) = current {
        let moved = route_alias(f, version, None, alias.revision_id.as_deref(), ctx, &alias.version, deadline).await?;
        return Ok(moved.arn);
    }
    let description = bounded_description(ctx, "none");
    let arn = retry(
        "CreateAlias",
        Backoff::CONTROL_PLANE,
        deadline,
        |e: &aws_sdk_lambda::error::SdkError<aws_sdk_lambda::operation::create_alias::CreateAliasError>| {
            e.as_service_error()
                .is_some_and(|s| s.is_resource_conflict_exception() || s.is_too_many_requests_exception())
        },
        || {
            f.lambda
                .create_alias()
                .function_name(f.function)
                .name(f.alias)
                .function_version(version)
                .description(&description)
                .send()
        },
    )
    .await
    .map_err(|e| {
        let not_found = e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception());
        f.aws_error("create the alias of", ErrorInfo::from_sdk(&e), not_found)
    })?
    .alias_arn;
    Ok(arn.unwrap_or_default())
}

/// "crossdeploy: pipeline P execution E; previous version N", at most 256 bytes, the previous
/// version always kept whole (an idempotent re-run reads it back).
fn bounded_description(ctx: &PipelineContext, previous: &str) -> String {
    let tail = format!("{PREVIOUS_MARK}{previous}");
    let head = bounded(&format!("crossdeploy: {}", ctx.describe()), 256 - tail.len());
    format!("{head}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alias_description_keeps_the_previous_version_even_when_cut() {
        let ctx = PipelineContext {
            job_id: "j".into(),
            pipeline_name: Some("p".repeat(300)),
            execution_id: Some("e".into()),
            ..Default::default()
        };
        let d = bounded_description(&ctx, "41");
        assert!(d.len() <= 256);
        assert_eq!(d.rsplit_once(PREVIOUS_MARK).map(|(_, v)| v), Some("41"));
    }
}

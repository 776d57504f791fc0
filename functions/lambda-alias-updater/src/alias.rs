//! Reading and moving the alias.

use crate::version::bounded;
use crate::{FunctionRef, UpdaterError};
use aws_sdk_lambda::types::AliasRoutingConfiguration;
use crossdeploy_aws::{is_transient, retry, Backoff, Deadline, ErrorInfo};
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
    /// The crossdeploy deployment that last moved the alias, as recorded in its description.
    pub recorded_deployment: Option<String>,
    /// Versions other than `version` taking part of the traffic, with their weights.
    pub routing: Vec<(String, f64)>,
}

const PREVIOUS_MARK: &str = "; previous version ";
const DEPLOYMENT_MARK: &str = "; deployment ";

impl AliasState {
    /// The traffic weight on `version` (1.0: all of it).
    pub fn weight_of(&self, version: &str) -> f64 {
        if self.version == version {
            1.0 - self.routing.iter().map(|(_, w)| w).sum::<f64>()
        } else {
            self.routing.iter().find(|(v, _)| v == version).map(|(_, w)| *w).unwrap_or(0.0)
        }
    }

    /// Whether the alias is exactly as a move to `main` with `extra` left it.
    pub fn is(&self, main: &str, extra: Option<(&str, u8)>) -> bool {
        self.version == main
            && match extra {
                None => self.routing.is_empty(),
                Some((v, p)) => {
                    self.routing.len() == 1
                        && self.routing[0].0 == v
                        && (self.routing[0].1 - crate::shift::weight(p)).abs() < 1e-6
                }
            }
    }

    /// In words: "version 3" or "version 3 with 10% on version 4".
    pub fn describe(&self) -> String {
        let routed: Vec<String> =
            self.routing.iter().map(|(v, w)| format!("{:.0}% on version {v}", w * 100.0)).collect();
        if routed.is_empty() {
            format!("version {}", self.version)
        } else {
            format!("version {} with {}", self.version, routed.join(", "))
        }
    }
}

/// `GetAlias`; `None` when the alias does not exist yet.
pub async fn read_alias(f: &FunctionRef<'_>, deadline: Deadline) -> Result<Option<AliasState>, UpdaterError> {
    let result = retry("GetAlias", Backoff::CONTROL_PLANE, deadline, is_transient, || {
        f.lambda.get_alias().function_name(f.function).name(f.alias).send()
    })
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
            recorded_deployment: out
                .description
                .as_deref()
                .and_then(|d| d.rsplit_once(PREVIOUS_MARK))
                .and_then(|(head, _)| head.rsplit_once(DEPLOYMENT_MARK))
                .map(|(_, d)| d.to_owned()),
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
/// or no routing, guarded by the alias's RevisionId. A retry whose first attempt was applied
/// (its answer lost) meets a moved RevisionId: the alias is read back, and if it is exactly as
/// this move leaves it, the move is done.
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
    let description = bounded_description(f, ctx, previous);
    let out = retry(
        "UpdateAlias",
        Backoff::CONTROL_PLANE,
        deadline,
        |e: &aws_sdk_lambda::error::SdkError<aws_sdk_lambda::operation::update_alias::UpdateAliasError>| {
            is_transient(e)
                || e.as_service_error()
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
    .await;
    match out {
        Ok(out) => Ok(Moved { arn: out.alias_arn.unwrap_or_default(), revision_id: out.revision_id }),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_precondition_failed_exception()) => {
            match read_alias(f, deadline).await? {
                Some(now) if now.is(main, extra) && now.recorded_deployment.as_deref() == Some(f.deployment) => {
                    tracing::info!(
                        function = f.function,
                        alias = f.alias,
                        "the alias move was applied by an earlier attempt"
                    );
                    Ok(Moved { arn: now.arn.unwrap_or_default(), revision_id: now.revision_id })
                }
                _ => Err(f.changed("the alias", ErrorInfo::from_sdk(&e))),
            }
        }
        Err(e) => {
            let not_found = e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception());
            Err(f.aws_error("move the alias of", ErrorInfo::from_sdk(&e), not_found))
        }
    }
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
    let description = bounded_description(f, ctx, "none");
    let created = retry(
        "CreateAlias",
        Backoff::CONTROL_PLANE,
        deadline,
        |e: &aws_sdk_lambda::error::SdkError<aws_sdk_lambda::operation::create_alias::CreateAliasError>| {
            is_transient(e) || e.as_service_error().is_some_and(|s| s.is_too_many_requests_exception())
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
    .await;
    match created {
        Ok(out) => Ok(out.alias_arn.unwrap_or_default()),
        // The alias exists: an earlier attempt created it (its answer lost), or someone else did.
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_conflict_exception()) => {
            match read_alias(f, deadline).await? {
                Some(now) if now.is(version, None) && now.recorded_deployment.as_deref() == Some(f.deployment) => {
                    Ok(now.arn.unwrap_or_default())
                }
                _ => Err(f.changed("the alias", ErrorInfo::from_sdk(&e))),
            }
        }
        Err(e) => {
            let not_found = e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception());
            Err(f.aws_error("create the alias of", ErrorInfo::from_sdk(&e), not_found))
        }
    }
}

/// "crossdeploy: pipeline P execution E; deployment D; previous version N", at most 256 bytes,
/// the deployment and the previous version always kept whole (a retry or a re-run reads them back).
fn bounded_description(f: &FunctionRef<'_>, ctx: &PipelineContext, previous: &str) -> String {
    let tail = format!("{DEPLOYMENT_MARK}{}{PREVIOUS_MARK}{previous}", bounded(f.deployment, 128));
    let head = bounded(&format!("crossdeploy: {}", ctx.describe()), 256usize.saturating_sub(tail.len()));
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
        let lambda = aws_sdk_lambda::Client::from_conf(
            aws_sdk_lambda::Config::builder()
                .behavior_version(aws_sdk_lambda::config::BehaviorVersion::latest())
                .build(),
        );
        let f = FunctionRef { lambda: &lambda, account: "1", function: "f", alias: "live", deployment: "job-7" };
        let d = bounded_description(&f, &ctx, "41");
        assert!(d.len() <= 256);
        assert_eq!(d.rsplit_once(PREVIOUS_MARK).map(|(_, v)| v), Some("41"));
        assert!(d.ends_with("; deployment job-7; previous version 41"), "{d}");
    }
}

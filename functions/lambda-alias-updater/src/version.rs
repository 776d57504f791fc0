//! Publishing the new version, guarded so that only the code crossdeploy uploaded is published,
//! once, and waiting for it to be ready.

use crate::{FunctionRef, UpdaterError};
use aws_sdk_lambda::operation::publish_version::PublishVersionError;
use aws_sdk_lambda::types::State;
use crossdeploy_aws::{is_transient, retry, Backoff, Deadline, ErrorInfo};
use crossdeploy_protocol::PipelineContext;
use std::time::Duration;

/// Pages of ListVersionsByFunction read, at most, to find a version published earlier.
const MAX_VERSION_PAGES: usize = 20;

/// A published version, and whether it is ready to take traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub version: String,
    /// Lambda still prepares it (SnapStart makes its snapshot): the alias must not move yet.
    pub pending: bool,
}

/// The description of the versions a deployment publishes: it names the pipeline run and the
/// deployment, so that a retry recognises the version its lost attempt published.
pub(crate) fn version_description(f: &FunctionRef<'_>, ctx: &PipelineContext) -> String {
    bounded(&format!("crossdeploy: {} deployment {}", ctx.describe(), f.deployment), 256)
}

/// `PublishVersion` with CodeSha256 and RevisionId preconditions and a description naming the
/// pipeline run and the deployment.
///
/// The SDK does not retry it: a retry after an answer lost could publish a second version. This
/// function retries transient faults itself, and before each retry looks for a version its
/// earlier attempt published (same CodeSha256, same description).
pub async fn publish_version(
    f: &FunctionRef<'_>,
    code_sha256: &str,
    revision_id: Option<&str>,
    ctx: &PipelineContext,
    deadline: Deadline,
) -> Result<Published, UpdaterError> {
    let description = version_description(f, ctx);
    let mut attempts = 0u32;
    let out = retry(
        "PublishVersion",
        Backoff::CONTROL_PLANE,
        deadline,
        |e: &Attempt| match e {
            Attempt::Found(_) | Attempt::Failed(_) => false,
            Attempt::Call(e) => {
                is_transient(e.as_ref())
                    || e.as_service_error()
                        .is_some_and(|s| s.is_resource_conflict_exception() || s.is_too_many_requests_exception())
            }
        },
        || {
            attempts += 1;
            let first = attempts == 1;
            let description = description.clone();
            async move {
                if !first {
                    match find_published(f, code_sha256, &description, deadline).await {
                        Ok(Some(v)) => return Err(Attempt::Found(v)),
                        Ok(None) => {}
                        Err(e) => return Err(Attempt::Failed(e)),
                    }
                }
                f.lambda
                    .publish_version()
                    .function_name(f.function)
                    .code_sha256(code_sha256)
                    .set_revision_id(revision_id.map(str::to_owned))
                    .description(&description)
                    .customize()
                    .config_override(
                        aws_sdk_lambda::config::Config::builder()
                            .retry_config(aws_sdk_lambda::config::retry::RetryConfig::disabled()),
                    )
                    .send()
                    .await
                    .map_err(|e| Attempt::Call(Box::new(e)))
            }
        },
    )
    .await;
    let out = match out {
        Ok(out) => out,
        Err(Attempt::Failed(e)) => return Err(e),
        Err(Attempt::Found(published)) => {
            tracing::info!(function = f.function, version = %published.version, "a retry found the version its earlier attempt published");
            return Ok(published);
        }
        Err(Attempt::Call(e)) => {
            let service = e.as_service_error();
            // A different CodeSha256 in $LATEST comes back as InvalidParameterValueException, a
            // moved RevisionId as PreconditionFailedException: maybe our own lost publish.
            if service.is_some_and(|s| s.is_precondition_failed_exception() || s.is_invalid_parameter_value_exception())
            {
                if let Some(v) = find_published(f, code_sha256, &description, deadline).await? {
                    return Ok(v);
                }
                return Err(f.changed("the code", ErrorInfo::from_sdk(&e)));
            }
            let not_found = service.is_some_and(|s| s.is_resource_not_found_exception());
            return Err(f.aws_error("publish a version of", ErrorInfo::from_sdk(&e), not_found));
        }
    };
    let version = out.version.ok_or_else(|| UpdaterError::Aws {
        action: "publish a version of",
        resource: f.describe(),
        error: ErrorInfo { code: None, message: "PublishVersion answered without a version number".to_owned() },
        not_found: false,
    })?;
    Ok(Published { version, pending: out.state == Some(State::Pending) })
}

/// One attempt of a publish: the call's error, a version an earlier attempt published, or the
/// search for it failing.
enum Attempt {
    Call(Box<aws_sdk_lambda::error::SdkError<PublishVersionError>>),
    Found(Published),
    Failed(UpdaterError),
}

impl crossdeploy_aws::DeadlineReached for Attempt {
    fn deadline_reached(what: &str) -> Self {
        Attempt::Call(Box::new(aws_sdk_lambda::error::SdkError::deadline_reached(what)))
    }
}

/// The newest version with this code and this description, if an earlier attempt published it.
async fn find_published(
    f: &FunctionRef<'_>,
    code_sha256: &str,
    description: &str,
    deadline: Deadline,
) -> Result<Option<Published>, UpdaterError> {
    let mut marker: Option<String> = None;
    let mut found: Option<Published> = None;
    for _ in 0..MAX_VERSION_PAGES {
        let out = retry("ListVersionsByFunction", Backoff::CONTROL_PLANE, deadline, is_transient, || {
            f.lambda.list_versions_by_function().function_name(f.function).set_marker(marker.clone()).send()
        })
        .await
        .map_err(|e| f.aws_error("list the versions of", ErrorInfo::from_sdk(&e), false))?;
        for v in out.versions() {
            let ours = v.code_sha256() == Some(code_sha256) && v.description() == Some(description);
            if let (true, Some(version)) = (ours, v.version().filter(|v| *v != "$LATEST")) {
                found = Some(Published { version: version.to_owned(), pending: v.state() == Some(&State::Pending) });
            }
        }
        match out.next_marker {
            Some(m) if !m.is_empty() => marker = Some(m),
            _ => break,
        }
    }
    Ok(found)
}

/// Where a new version stands once waiting is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Active,
    /// Still Pending near the deadline: resume later.
    StillPending,
}

/// Waits until the published `version` is Active (SnapStart versions are Pending while their
/// snapshot is made), reading its State every 1, 2, 4, 5... seconds, never past `deadline`.
/// Failed is an error with Lambda's reason.
pub async fn wait_for_version(
    f: &FunctionRef<'_>,
    version: &str,
    deadline: Deadline,
) -> Result<Readiness, UpdaterError> {
    let mut pause = Duration::from_secs(1);
    loop {
        let out = retry("GetFunctionConfiguration", Backoff::CONTROL_PLANE, deadline, is_transient, || {
            f.lambda.get_function_configuration().function_name(f.function).qualifier(version).send()
        })
        .await
        .map_err(|e| f.aws_error("read the state of a version of", ErrorInfo::from_sdk(&e), false))?;
        match out.state() {
            None | Some(State::Active) => return Ok(Readiness::Active),
            Some(State::Failed) | Some(State::Inactive) => {
                return Err(UpdaterError::UpdateFailed {
                    function: f.function.to_owned(),
                    account: f.account.to_owned(),
                    reason: format!(
                        "version {version} is {} ({}); the alias was not moved",
                        out.state().map(|s| s.as_str()).unwrap_or("?"),
                        out.state_reason().unwrap_or("Lambda gave no reason")
                    ),
                })
            }
            Some(_) => {
                if deadline.remaining() <= pause {
                    return Ok(Readiness::StillPending);
                }
                tracing::info!(function = f.function, version, wait_ms = pause.as_millis() as u64, "version pending");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// At most `max` bytes, cut on a character boundary.
pub(crate) fn bounded(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

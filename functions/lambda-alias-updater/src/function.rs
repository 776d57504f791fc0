//! The target function's code: its configuration, the code update, and the wait for it to settle.

use crate::artifact::DIRECT_UPLOAD_THRESHOLD;
use crate::staging::{Staged, Staging};
use crate::upload::ZipFileBody;
use crate::{Package, UpdaterError};
use aws_sdk_lambda::operation::update_function_code::UpdateFunctionCodeError;
use aws_sdk_lambda::types::LastUpdateStatus;
use crossdeploy_aws::{is_transient, retry, Backoff, Deadline, ErrorInfo};
use std::time::Duration;

/// The function deployed to, with the client of its account, and the deployment acting on it
/// (named in the descriptions crossdeploy writes, so that a retry recognises its own work).
#[derive(Debug, Clone, Copy)]
pub struct FunctionRef<'a> {
    pub lambda: &'a aws_sdk_lambda::Client,
    pub account: &'a str,
    pub function: &'a str,
    pub alias: &'a str,
    pub deployment: &'a str,
}

impl FunctionRef<'_> {
    pub fn describe(&self) -> String {
        format!("function {} in account {}", self.function, self.account)
    }

    /// A precondition (RevisionId, CodeSha256) did not hold: someone else changed `what`.
    pub(crate) fn changed(&self, what: &'static str, error: ErrorInfo) -> UpdaterError {
        UpdaterError::Changed { what, function: self.function.to_owned(), account: self.account.to_owned(), error }
    }

    pub(crate) fn aws_error(&self, action: &'static str, error: ErrorInfo, not_found: bool) -> UpdaterError {
        if not_found {
            return UpdaterError::Configuration(format!(
                "failed to {action} {}: {error}. Check FunctionName, Alias and Region: the function must exist in the target account",
                self.describe()
            ));
        }
        UpdaterError::Aws { action, resource: self.describe(), error, not_found }
    }
}

/// What a `GetFunctionConfiguration` says, as far as a deployment cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeState {
    /// `Zip` or `Image`.
    pub package_type: Option<aws_sdk_lambda::types::PackageType>,
    pub revision_id: Option<String>,
    pub code_sha256: Option<String>,
    pub status: Option<LastUpdateStatus>,
    pub reason: Option<String>,
    /// The version read (`$LATEST`, or the one the qualifier names or an alias points at).
    pub version: Option<String>,
}

/// `GetFunctionConfiguration` of `qualifier` (a version or an alias; `None`: `$LATEST`),
/// throttling retried.
pub async fn code_state(
    f: &FunctionRef<'_>,
    qualifier: Option<&str>,
    deadline: Deadline,
) -> Result<CodeState, UpdaterError> {
    let out = retry("GetFunctionConfiguration", Backoff::CONTROL_PLANE, deadline, is_transient, || {
        f.lambda
            .get_function_configuration()
            .function_name(f.function)
            .set_qualifier(qualifier.map(str::to_owned))
            .send()
    })
    .await
    .map_err(|e| {
        let not_found = e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception());
        f.aws_error("read the configuration of", ErrorInfo::from_sdk(&e), not_found)
    })?;
    let reason = match (out.last_update_status_reason_code(), out.last_update_status_reason()) {
        (Some(code), Some(r)) => Some(format!("{}: {r}", code.as_str())),
        (None, Some(r)) => Some(r.to_owned()),
        (Some(code), None) => Some(code.as_str().to_owned()),
        (None, None) => None,
    };
    Ok(CodeState {
        package_type: out.package_type,
        revision_id: out.revision_id,
        code_sha256: out.code_sha256,
        status: out.last_update_status,
        reason,
        version: out.version,
    })
}

/// Where `package` is staged when it must be: a zip over the direct upload threshold goes
/// through the target account's staging bucket (`None` for images and direct uploads).
pub async fn stage_if_needed(
    f: &FunctionRef<'_>,
    package: &Package,
    staging: Option<&Staging>,
    deadline: Deadline,
) -> Result<Option<Staged>, UpdaterError> {
    if package.as_image().is_some() || package.direct() {
        return Ok(None);
    }
    match staging {
        Some(staging) => Ok(Some(staging.stage(f, package, deadline).await?)),
        None => Err(no_staging(f, package)),
    }
}

fn no_staging(f: &FunctionRef<'_>, package: &Package) -> UpdaterError {
    UpdaterError::Configuration(format!(
        "the package is {} bytes, over the direct upload threshold of {DIRECT_UPLOAD_THRESHOLD} bytes, and no staging bucket was given for {}",
        package.len,
        f.describe()
    ))
}

/// `UpdateFunctionCode`, guarded by `$LATEST`'s RevisionId: with the image, with the package's
/// bytes when it is small enough for a direct upload, else from where [`stage_if_needed`] put it.
/// A conflict (another update still settling), throttling or a transient fault is retried with
/// backoff until the deadline. A retry whose first attempt was applied (its answer lost) meets
/// a moved RevisionId: `$LATEST` is read back, and holding the package's CodeSha256 it is ours.
pub async fn update_code(
    f: &FunctionRef<'_>,
    package: &Package,
    staged: Option<&Staged>,
    revision_id: Option<&str>,
    deadline: Deadline,
) -> Result<Option<Settled>, UpdaterError> {
    /// Where the code comes from: the request itself, the staging bucket, or ECR.
    enum Code<'a> {
        Direct(ZipFileBody),
        Staged(&'a Staged),
        Image(String),
    }
    let code = match (package.as_image(), staged) {
        (Some(image), _) => Code::Image(image.uri()),
        (None, Some(staged)) => Code::Staged(staged),
        // A direct upload's body is built once, from the package in ephemeral storage (`upload`).
        (None, None) if package.direct() => Code::Direct(ZipFileBody::new(package).await?),
        (None, None) => return Err(no_staging(f, package)),
    };
    let retryable = |e: &aws_sdk_lambda::error::SdkError<UpdateFunctionCodeError>| {
        is_transient(e)
            || e.as_service_error()
                .is_some_and(|s| s.is_resource_conflict_exception() || s.is_too_many_requests_exception())
    };
    let result = retry("UpdateFunctionCode", Backoff::CONTROL_PLANE, deadline, retryable, || async {
        let request = f
            .lambda
            .update_function_code()
            .function_name(f.function)
            .set_revision_id(revision_id.map(str::to_owned))
            .publish(false);
        match &code {
            Code::Staged(s) => request.s3_bucket(&s.bucket).s3_key(&s.key).s3_object_version(&s.version).send().await,
            Code::Direct(body) => {
                request.zip_file(ZipFileBody::placeholder()).customize().interceptor(body.clone()).send().await
            }
            Code::Image(uri) => request.image_uri(uri).send().await,
        }
    })
    .await;
    let e = match result {
        // Settled already when Lambda's answer says so (it usually says InProgress).
        Ok(out) => {
            return Ok((out.last_update_status == Some(LastUpdateStatus::Successful))
                .then_some(Settled::Done { revision_id: out.revision_id, code_sha256: out.code_sha256 }))
        }
        Err(e) => e,
    };
    let service = e.as_service_error();
    if service.is_some_and(|s| s.is_precondition_failed_exception()) {
        if code_state(f, None, deadline).await?.code_sha256.as_deref() == Some(package.sha256.as_str()) {
            tracing::info!(function = f.function, "the code update was applied by an earlier attempt");
            return Ok(None);
        }
        return Err(f.changed("the code", ErrorInfo::from_sdk(&e)));
    }
    let not_found = service.is_some_and(|s| s.is_resource_not_found_exception());
    Err(f.aws_error("update the code of", ErrorInfo::from_sdk(&e), not_found))
}

/// Where a code update stands once waiting is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// `LastUpdateStatus` is Successful: `$LATEST` holds the new code at this revision.
    Done { revision_id: Option<String>, code_sha256: Option<String> },
    /// Still InProgress and the deadline is near: resume later.
    StillInProgress,
}

/// Polls `LastUpdateStatus` until Successful (done) or Failed (an error with Lambda's reason),
/// waiting 1, 2, 4, 5, 5... seconds between reads, never past `deadline`.
pub async fn wait_for_update(f: &FunctionRef<'_>, deadline: Deadline) -> Result<Settled, UpdaterError> {
    let mut pause = Duration::from_secs(1);
    loop {
        let state = code_state(f, None, deadline).await?;
        match state.status {
            None | Some(LastUpdateStatus::Successful) => {
                return Ok(Settled::Done { revision_id: state.revision_id, code_sha256: state.code_sha256 })
            }
            Some(LastUpdateStatus::Failed) => {
                return Err(UpdaterError::UpdateFailed {
                    function: f.function.to_owned(),
                    account: f.account.to_owned(),
                    reason: state.reason.unwrap_or_else(|| "Lambda gave no reason".to_owned()),
                })
            }
            Some(_) => {
                if deadline.remaining() <= pause {
                    return Ok(Settled::StillInProgress);
                }
                tracing::info!(function = f.function, wait_ms = pause.as_millis() as u64, "code update in progress");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}

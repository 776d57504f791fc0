//! Publishing the new version, guarded so that only the code crossdeploy uploaded is published.

use crate::{FunctionRef, UpdaterError};
use aws_sdk_lambda::operation::publish_version::PublishVersionError;
use crossdeploy_aws::{retry, Backoff, Deadline, ErrorInfo};
use crossdeploy_protocol::PipelineContext;

/// `PublishVersion` with CodeSha256 and RevisionId preconditions and a description naming the
/// pipeline run. Returns the version number.
pub async fn publish_version(
    f: &FunctionRef<'_>,
    code_sha256: &str,
    revision_id: Option<&str>,
    ctx: &PipelineContext,
    deadline: Deadline,
) -> Result<String, UpdaterError> {
    let description = bounded(&format!("crossdeploy: {}", ctx.describe()), 256);
    let out = retry(
        "PublishVersion",
        Backoff::CONTROL_PLANE,
        deadline,
        |e: &aws_sdk_lambda::error::SdkError<PublishVersionError>| {
            e.as_service_error()
                .is_some_and(|s| s.is_resource_conflict_exception() || s.is_too_many_requests_exception())
        },
        || {
            f.lambda
                .publish_version()
                .function_name(f.function)
                .code_sha256(code_sha256)
                .set_revision_id(revision_id.map(str::to_owned))
                .description(&description)
                .send()
        },
    )
    .await
    .map_err(|e| {
        let service = e.as_service_error();
        // A different CodeSha256 in $LATEST comes back as InvalidParameterValueException.
        if service.is_some_and(|s| s.is_precondition_failed_exception() || s.is_invalid_parameter_value_exception()) {
            return f.changed("the code", ErrorInfo::from_sdk(&e));
        }
        let not_found = service.is_some_and(|s| s.is_resource_not_found_exception());
        f.aws_error("publish a version of", ErrorInfo::from_sdk(&e), not_found)
    })?;
    out.version.ok_or_else(|| UpdaterError::Aws {
        action: "publish a version of",
        resource: f.describe(),
        error: ErrorInfo { code: None, message: "PublishVersion answered without a version number".to_owned() },
        not_found: false,
    })
}

/// At most `max` bytes, cut on a character boundary.
pub(crate) fn bounded(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

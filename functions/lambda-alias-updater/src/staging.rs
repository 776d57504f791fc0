//! Packages too large for a direct upload go through S3 **in the target account**: the updater
//! streams the package into the account's staging bucket with the target role (a multipart
//! upload, one part in memory at a time), and Lambda takes the code from there. The shared
//! artifact bucket and its key are never opened to target accounts.

use crate::{FunctionRef, Package, UpdaterError};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use crossdeploy_aws::{is_transient, retry, Backoff, Deadline, ErrorInfo};

/// The size of each part of the multipart upload (S3 takes 5 MiB to 5 GiB; at most 10,000 parts).
pub const PART_BYTES: u64 = 8 * 1024 * 1024;
/// The object metadata key recording the package's CodeSha256.
const SHA_METADATA: &str = "crossdeploy-code-sha256";

/// The staging bucket of the target account and region, as `infra/target-account.yaml` names it.
pub fn staging_bucket(account: &str, region: &str) -> String {
    format!("crossdeploy-staging-{account}-{region}")
}

/// The target account's staging bucket, reached with the target role.
#[derive(Debug, Clone)]
pub struct Staging {
    pub s3: aws_sdk_s3::Client,
    pub bucket: String,
    /// The target account: every call names it as the bucket's expected owner, so a bucket of
    /// that name owned by anyone else is never written to.
    pub account: String,
}

/// Where a staged package is: Lambda's `S3Bucket`, `S3Key` and `S3ObjectVersion`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    pub bucket: String,
    pub key: String,
    pub version: String,
}

impl Staging {
    fn error(&self, action: &'static str, error: ErrorInfo) -> UpdaterError {
        if error.code.as_deref() == Some("NoSuchBucket") {
            return UpdaterError::Configuration(format!(
                "the staging bucket {} does not exist in account {}: packages over the direct upload limit go through it. Update the account's crossdeploy-target stack (infra/target-account.yaml) to create it",
                self.bucket, self.account
            ));
        }
        UpdaterError::Aws {
            action,
            resource: format!("staging bucket {} in account {}", self.bucket, self.account),
            error,
            not_found: false,
        }
    }

    /// The key a package is staged under: one per function and content, so a retry (or another
    /// deployment of the same package) finds what an earlier attempt uploaded.
    pub fn key(function: &str, package: &Package) -> String {
        let name = package.sha256.replace('/', "_").replace('+', "-").trim_end_matches('=').to_owned();
        // FunctionName may be a name, an ARN or a partial ARN (`123456789012:function:name`).
        let function = match function.split_once("function:") {
            Some((_, rest)) => rest.split(':').next().unwrap_or(rest),
            None => function,
        };
        format!("crossdeploy/{function}/{name}.zip")
    }

    /// The object already staged under `key` for this package, if there is one.
    async fn existing(&self, key: &str, package: &Package, deadline: Deadline) -> Result<Option<Staged>, UpdaterError> {
        let head = retry("HeadObject (staging)", Backoff::CONTROL_PLANE, deadline, is_transient, || {
            self.s3.head_object().bucket(&self.bucket).key(key).expected_bucket_owner(&self.account).send()
        })
        .await;
        match head {
            Ok(out) => {
                let ours = out.metadata().and_then(|m| m.get(SHA_METADATA)).map(String::as_str)
                    == Some(package.sha256.as_str())
                    && out.content_length() == Some(package.len as i64);
                Ok(match (ours, out.version_id) {
                    (true, Some(version)) if version != "null" => {
                        Some(Staged { bucket: self.bucket.clone(), key: key.to_owned(), version })
                    }
                    _ => None,
                })
            }
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(None),
            Err(e) => Err(self.error("read an object of", ErrorInfo::from_sdk(&e))),
        }
    }

    /// Uploads `package` (unless an earlier attempt did) and returns where it is.
    pub async fn stage(
        &self,
        f: &FunctionRef<'_>,
        package: &Package,
        deadline: Deadline,
    ) -> Result<Staged, UpdaterError> {
        let key = Self::key(f.function, package);
        if let Some(staged) = self.existing(&key, package, deadline).await? {
            tracing::info!(bucket = %self.bucket, key = %key, "the package is staged already");
            return Ok(staged);
        }
        tracing::info!(bucket = %self.bucket, key = %key, bytes = package.len, "staging the package in the target account");
        let created = retry("CreateMultipartUpload", Backoff::CONTROL_PLANE, deadline, is_transient, || {
            self.s3
                .create_multipart_upload()
                .bucket(&self.bucket)
                .key(&key)
                .expected_bucket_owner(&self.account)
                .content_type("application/zip")
                .metadata(SHA_METADATA, &package.sha256)
                // The SDK checksums every part (CRC32); the upload names the algorithm, and
                // the completion each part's checksum, as S3 requires when parts carry one.
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
                .send()
        })
        .await
        .map_err(|e| self.error("start an upload to", ErrorInfo::from_sdk(&e)))?;
        let Some(upload_id) = created.upload_id else {
            return Err(
                self.error("start an upload to", ErrorInfo { code: None, message: "S3 gave no upload id".into() })
            );
        };
        match self.upload_parts(&key, &upload_id, package, deadline).await {
            Ok(staged) => Ok(staged),
            Err(e) => {
                // The parts uploaded so far are let go (the bucket's lifecycle rule also aborts
                // incomplete uploads after a day, should this call fail too).
                let abort = self
                    .s3
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&key)
                    .upload_id(&upload_id)
                    .expected_bucket_owner(&self.account)
                    .send();
                match tokio::time::timeout(deadline.remaining(), abort).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(abort_error)) => {
                        tracing::warn!(bucket = %self.bucket, key = %key, error = %ErrorInfo::from_sdk(&abort_error), "failed to abort the staging upload; the bucket's lifecycle rule will");
                    }
                    Err(_) => {
                        tracing::warn!(bucket = %self.bucket, key = %key, "no time left to abort the staging upload; the bucket's lifecycle rule will");
                    }
                }
                Err(e)
            }
        }
    }

    async fn upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        package: &Package,
        deadline: Deadline,
    ) -> Result<Staged, UpdaterError> {
        let mut parts = Vec::new();
        let mut start = 0u64;
        let mut number = 1i32;
        while start < package.len {
            let len = PART_BYTES.min(package.len - start);
            // One part in memory at a time; each attempt sends the same bytes (cheap clones).
            let bytes = bytes::Bytes::from(package.range(start, len).await?);
            let out = retry("UploadPart", Backoff::CONTROL_PLANE, deadline, is_transient, || {
                self.s3
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(number)
                    .expected_bucket_owner(&self.account)
                    .content_length(len as i64)
                    .body(aws_sdk_s3::primitives::ByteStream::from(bytes.clone()))
                    .send()
            })
            .await
            .map_err(|e| self.error("upload a part of the package to", ErrorInfo::from_sdk(&e)))?;
            let Some(e_tag) = out.e_tag else {
                let message = format!("S3 answered UploadPart {number} without an ETag");
                return Err(self.error("upload a part of the package to", ErrorInfo { code: None, message }));
            };
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .e_tag(e_tag)
                    .set_checksum_crc32(out.checksum_crc32)
                    .build(),
            );
            start += len;
            number += 1;
        }
        let completed = CompletedMultipartUpload::builder().set_parts(Some(parts)).build();
        let done = retry("CompleteMultipartUpload", Backoff::CONTROL_PLANE, deadline, is_transient, || {
            self.s3
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .expected_bucket_owner(&self.account)
                .multipart_upload(completed.clone())
                .send()
        })
        .await;
        let version = match done {
            Ok(out) => out.version_id,
            // A retry after the completion was applied (its answer lost) finds the upload gone:
            // the object it made is ours if it holds this package.
            Err(e) if e.as_service_error().is_some_and(|s| s.code() == Some("NoSuchUpload")) => {
                match self.existing(key, package, deadline).await? {
                    Some(staged) => Some(staged.version),
                    None => {
                        return Err(self.error(
                            "complete the upload to",
                            ErrorInfo {
                                code: Some("NoSuchUpload".into()),
                                message: format!("the upload of {key} is gone and no object holding this package is there; someone aborted it or replaced the object: run the action again"),
                            },
                        ))
                    }
                }
            }
            Err(e) => return Err(self.error("complete the upload to", ErrorInfo::from_sdk(&e))),
        };
        match version.filter(|v| v != "null") {
            Some(version) => Ok(Staged { bucket: self.bucket.clone(), key: key.to_owned(), version }),
            None => Err(UpdaterError::Configuration(format!(
                "the staging bucket {} in account {} has no versioning, so the staged package cannot be named by its version: enable versioning (infra/target-account.yaml creates the bucket with it)",
                self.bucket, self.account
            ))),
        }
    }
}

//! A pipeline's input artifact: read from the artifact bucket with the function's own
//! credentials (the bucket and its key are never opened to target accounts), and a file found
//! inside its zip. Every read is bounded in size.

use aws_sdk_s3::Client as S3;
use crossdeploy_aws::{is_transient, retry, Backoff, Deadline, DeadlineReached, ErrorInfo};
use crossdeploy_protocol::{ArtifactLocation, FailureType};
use std::io::{Cursor, Read};

/// The largest input artifact read into memory.
pub const MAX_ARTIFACT_BYTES: u64 = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("the input artifact {location} does not exist ({error}); the pipeline's artifact store lost it or it expired: re-run the pipeline from its source")]
    Missing { location: ArtifactLocation, error: ErrorInfo },
    #[error("failed to read the input artifact {location} in the shared services account: {error}")]
    Read { location: ArtifactLocation, error: ErrorInfo },
    #[error("{what} is {size} bytes; {limit_text}")]
    TooLarge { what: String, size: u64, limit_text: String },
    #[error("the input artifact {location} is not a zip file, so `{path}` cannot be found in it")]
    NotAZip { location: ArtifactLocation, path: String },
    #[error("`{path}` is not in the input artifact {location}; it holds: {holds}")]
    NotFound { location: ArtifactLocation, path: String, holds: String },
    #[error("`{path}` in {location} is a folder, not a file")]
    IsFolder { location: ArtifactLocation, path: String },
}

impl ArtifactError {
    pub fn failure_type(&self) -> FailureType {
        match self {
            ArtifactError::Read { error, .. } if error.is_access_denied() => FailureType::PermissionError,
            ArtifactError::Missing { .. } | ArtifactError::Read { .. } => FailureType::JobFailed,
            ArtifactError::TooLarge { .. }
            | ArtifactError::NotAZip { .. }
            | ArtifactError::NotFound { .. }
            | ArtifactError::IsFolder { .. } => FailureType::ConfigurationError,
        }
    }
}

/// One attempt's failure to read the object.
enum Fetch {
    Failed { error: ErrorInfo, missing: bool, transient: bool },
    TooLarge(u64),
}

impl DeadlineReached for Fetch {
    fn deadline_reached(what: &str) -> Self {
        Fetch::Failed {
            error: ErrorInfo { code: None, message: format!("{what}: cut at the deadline before S3 answered") },
            missing: false,
            transient: false,
        }
    }
}

/// The whole artifact object. A transient failure (throttling, a 5xx, a connection dropped
/// before or while the body arrives) is retried until `deadline`: reading changes nothing.
pub async fn read_artifact(s3: &S3, location: &ArtifactLocation, deadline: Deadline) -> Result<Vec<u8>, ArtifactError> {
    let what = format!("reading the input artifact {location}");
    let retryable = |f: &Fetch| matches!(f, Fetch::Failed { transient: true, .. });
    let result = retry(&what, Backoff::CONTROL_PLANE, deadline, retryable, || async {
        let object =
            s3.get_object().bucket(&location.bucket).key(&location.key).send().await.map_err(|e| Fetch::Failed {
                missing: e.as_service_error().is_some_and(|s| s.is_no_such_key()),
                transient: is_transient(&e),
                error: ErrorInfo::from_sdk(&e),
            })?;
        if let Some(size) = object.content_length().map(|l| l.max(0) as u64).filter(|l| *l > MAX_ARTIFACT_BYTES) {
            return Err(Fetch::TooLarge(size));
        }
        // A body cut short is a dropped connection: transient.
        let bytes = object.body.collect().await.map_err(|e| Fetch::Failed {
            error: ErrorInfo { code: None, message: format!("the object's body was cut short: {e}") },
            missing: false,
            transient: true,
        })?;
        Ok(bytes.to_vec())
    })
    .await;
    result.map_err(|f| match f {
        Fetch::TooLarge(size) => ArtifactError::TooLarge {
            what: format!("the input artifact {location}"),
            size,
            limit_text: format!("crossdeploy reads at most {MAX_ARTIFACT_BYTES} bytes"),
        },
        Fetch::Failed { error, missing: true, .. } => ArtifactError::Missing { location: location.clone(), error },
        Fetch::Failed { error, .. } => ArtifactError::Read { location: location.clone(), error },
    })
}

/// The file at `path` inside the artifact zip, refused when it is larger than `max` bytes
/// (`limit_text` says why, e.g. "a direct upload to Lambda takes at most 50 MB").
pub fn extract_file(
    artifact: &[u8],
    location: &ArtifactLocation,
    path: &str,
    max: u64,
    limit_text: &str,
) -> Result<Vec<u8>, ArtifactError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(artifact))
        .map_err(|_| ArtifactError::NotAZip { location: location.clone(), path: path.to_owned() })?;
    let wanted = path.trim_start_matches("./");
    let Some(index) = archive.index_for_name(wanted) else {
        let names: Vec<String> = archive.file_names().take(20).filter_map(Result::ok).map(|n| n.into_owned()).collect();
        return Err(ArtifactError::NotFound {
            location: location.clone(),
            path: path.to_owned(),
            holds: if names.is_empty() { "nothing".to_owned() } else { names.join(", ") },
        });
    };
    let not_a_zip = |_| ArtifactError::NotAZip { location: location.clone(), path: path.to_owned() };
    let mut entry = archive.by_index(index).map_err(not_a_zip)?;
    if entry.is_dir() {
        return Err(ArtifactError::IsFolder { location: location.clone(), path: path.to_owned() });
    }
    let too_large = |size| ArtifactError::TooLarge {
        what: format!("`{path}` in {location}"),
        size,
        limit_text: limit_text.to_owned(),
    };
    if entry.size() > max {
        return Err(too_large(entry.size()));
    }
    let mut out = Vec::with_capacity(entry.size() as usize);
    // `take` guards against an entry whose header understates its size.
    (&mut entry)
        .take(max + 1)
        .read_to_end(&mut out)
        .map_err(|_| ArtifactError::NotAZip { location: location.clone(), path: path.to_owned() })?;
    if out.len() as u64 > max {
        return Err(too_large(out.len() as u64));
    }
    Ok(out)
}

/// Whether `bytes` is a zip archive.
pub fn is_zip(bytes: &[u8]) -> bool {
    zip::ZipArchive::new(Cursor::new(bytes)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data) in files {
            w.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn loc() -> ArtifactLocation {
        ArtifactLocation { bucket: "b".into(), key: "k.zip".into() }
    }

    #[tokio::test(start_paused = true)]
    async fn a_transient_failure_reading_the_artifact_is_retried() {
        use aws_smithy_mocks::{mock, mock_client, RuleMode};
        let flaky = mock!(S3::get_object)
            .sequence()
            .http_status(503, None)
            .times(2)
            .output(|| {
                aws_sdk_s3::operation::get_object::GetObjectOutput::builder()
                    .body(aws_sdk_s3::primitives::ByteStream::from_static(b"pkg"))
                    .build()
            })
            .build();
        let s3 = mock_client!(aws_sdk_s3, RuleMode::Sequential, [&flaky]);
        let deadline = Deadline::after(std::time::Duration::from_secs(60));
        assert_eq!(read_artifact(&s3, &loc(), deadline).await.unwrap(), b"pkg");
        assert_eq!(flaky.num_calls(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_missing_artifact_is_not_retried_and_says_so() {
        use aws_smithy_mocks::{mock, mock_client, RuleMode};
        let missing = mock!(S3::get_object).then_error(|| {
            aws_sdk_s3::operation::get_object::GetObjectError::NoSuchKey(
                aws_sdk_s3::types::error::NoSuchKey::builder().message("The specified key does not exist.").build(),
            )
        });
        let s3 = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&missing]);
        let deadline = Deadline::after(std::time::Duration::from_secs(60));
        let e = read_artifact(&s3, &loc(), deadline).await.unwrap_err();
        assert!(matches!(e, ArtifactError::Missing { .. }), "{e}");
        assert_eq!(missing.num_calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_failing_until_the_deadline_ends_there() {
        use aws_smithy_mocks::{mock, mock_client, RuleMode};
        let down = mock!(S3::get_object).then_http_response(|| {
            aws_smithy_runtime_api::http::Response::new(
                aws_smithy_runtime_api::http::StatusCode::try_from(503).unwrap(),
                aws_smithy_types::body::SdkBody::from(
                    "<Error><Code>SlowDown</Code><Message>slow down</Message></Error>",
                ),
            )
        });
        let s3 = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&down]);
        let started = tokio::time::Instant::now();
        let e = read_artifact(&s3, &loc(), Deadline::after(std::time::Duration::from_secs(20))).await.unwrap_err();
        assert!(matches!(e, ArtifactError::Read { .. }), "{e}");
        assert!(e.to_string().contains("s3://b/k.zip"), "{e}");
        assert!(started.elapsed() <= std::time::Duration::from_secs(20));
        assert!(down.num_calls() > 2);
    }

    #[test]
    fn a_file_is_found_by_its_path() {
        let artifact = zip_of(&[("README", b"hi"), ("dist/lambda.zip", b"pkg")]);
        assert_eq!(extract_file(&artifact, &loc(), "dist/lambda.zip", 10, "").unwrap(), b"pkg");
        assert_eq!(extract_file(&artifact, &loc(), "./dist/lambda.zip", 10, "").unwrap(), b"pkg");
    }

    #[test]
    fn a_missing_path_lists_what_the_artifact_holds() {
        let artifact = zip_of(&[("README", b"hi"), ("other.zip", b"x")]);
        let e = extract_file(&artifact, &loc(), "lambda.zip", 10, "").unwrap_err();
        assert_eq!(e.failure_type(), FailureType::ConfigurationError);
        let msg = e.to_string();
        assert!(
            msg.contains("`lambda.zip`") && msg.contains("README, other.zip") && msg.contains("s3://b/k.zip"),
            "{msg}"
        );
    }

    #[test]
    fn an_artifact_that_is_not_a_zip_is_refused() {
        let e = extract_file(b"just text", &loc(), "lambda.zip", 10, "").unwrap_err();
        assert!(e.to_string().contains("not a zip"), "{e}");
        assert!(!is_zip(b"just text"));
    }

    #[test]
    fn a_file_over_the_limit_is_refused_naming_the_limit() {
        let artifact = zip_of(&[("imagedefinitions.json", &[b' '; 200])]);
        let e =
            extract_file(&artifact, &loc(), "imagedefinitions.json", 100, "at most 100 bytes are read").unwrap_err();
        assert_eq!(e.failure_type(), FailureType::ConfigurationError);
        assert!(e.to_string().contains("200 bytes; at most 100 bytes are read"), "{e}");
    }
}

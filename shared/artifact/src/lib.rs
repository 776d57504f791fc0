//! A pipeline's input artifact: read from the artifact bucket with the function's own
//! credentials (the bucket and its key are never opened to target accounts), and a file found
//! inside its zip. Every read is bounded in size.

use aws_sdk_s3::Client as S3;
use crossdeploy_aws::ErrorInfo;
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

/// The whole artifact object.
pub async fn read_artifact(s3: &S3, location: &ArtifactLocation) -> Result<Vec<u8>, ArtifactError> {
    let object = s3.get_object().bucket(&location.bucket).key(&location.key).send().await.map_err(|e| {
        let missing = e.as_service_error().is_some_and(|s| s.is_no_such_key());
        let error = ErrorInfo::from_sdk(&e);
        if missing {
            ArtifactError::Missing { location: location.clone(), error }
        } else {
            ArtifactError::Read { location: location.clone(), error }
        }
    })?;
    if let Some(size) = object.content_length().map(|l| l.max(0) as u64).filter(|l| *l > MAX_ARTIFACT_BYTES) {
        return Err(ArtifactError::TooLarge {
            what: format!("the input artifact {location}"),
            size,
            limit_text: format!("crossdeploy reads at most {MAX_ARTIFACT_BYTES} bytes"),
        });
    }
    let bytes = object.body.collect().await.map_err(|e| ArtifactError::Read {
        location: location.clone(),
        error: ErrorInfo { code: None, message: e.to_string() },
    })?;
    Ok(bytes.to_vec())
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

//! Reading the Lambda package from the artifact bucket, with the updater's own credentials.

use crate::UpdaterError;
use aws_sdk_s3::Client as S3;
use base64::Engine;
use crossdeploy_aws::ErrorInfo;
use crossdeploy_protocol::ArtifactLocation;
use sha2::{Digest, Sha256};
use std::io::{Cursor, Read};

/// Lambda takes at most 50 MB of zipped code in a direct upload.
pub const MAX_PACKAGE_BYTES: u64 = 50 * 1024 * 1024;
/// The largest input artifact read into memory to find the package in it.
pub const MAX_ARTIFACT_BYTES: u64 = 256 * 1024 * 1024;

/// A Lambda deployment package and its CodeSha256 (base64 of its SHA-256, as Lambda reports it).
#[derive(Clone, PartialEq, Eq)]
pub struct Package {
    pub bytes: Vec<u8>,
    pub sha256: String,
}

impl std::fmt::Debug for Package {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Package")
            .field("len", &self.bytes.len())
            .field("sha256", &self.sha256)
            .finish()
    }
}

impl Package {
    /// Checks that `bytes` is a zip Lambda can take, and computes its CodeSha256.
    pub fn new(bytes: Vec<u8>, origin: &str) -> Result<Self, UpdaterError> {
        if bytes.len() as u64 > MAX_PACKAGE_BYTES {
            return Err(UpdaterError::Configuration(format!(
                "the package {origin} is {} bytes; a direct upload to Lambda takes at most {MAX_PACKAGE_BYTES} bytes (50 MB) zipped. Make the package smaller, or deploy it as a container image",
                bytes.len()
            )));
        }
        if zip::ZipArchive::new(Cursor::new(&bytes)).is_err() {
            return Err(UpdaterError::Configuration(format!(
                "the package {origin} is not a zip file; Lambda takes a zip of the function's code (set ArtifactPath to the package's path inside the artifact if the artifact holds more than the package)"
            )));
        }
        let sha256 = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&bytes));
        Ok(Self { bytes, sha256 })
    }
}

/// Reads the package: the whole artifact object, or the file at `artifact_path` inside the artifact zip.
pub async fn read_package(
    s3: &S3,
    location: &ArtifactLocation,
    artifact_path: Option<&str>,
) -> Result<Package, UpdaterError> {
    let object = s3
        .get_object()
        .bucket(&location.bucket)
        .key(&location.key)
        .send()
        .await
        .map_err(|e| {
            let not_found = e.as_service_error().is_some_and(|s| s.is_no_such_key());
            let error = ErrorInfo::from_sdk(&e);
            if not_found {
                UpdaterError::Artifact(format!(
                    "the input artifact {location} does not exist ({error}); the pipeline's artifact store lost it or it expired: re-run the pipeline from its source"
                ))
            } else {
                UpdaterError::Aws {
                    action: "read the input artifact",
                    resource: format!("{location} in the shared services account"),
                    not_found: false,
                    error,
                }
            }
        })?;
    if object
        .content_length()
        .is_some_and(|l| l as u64 > MAX_ARTIFACT_BYTES)
    {
        return Err(UpdaterError::Configuration(format!(
            "the input artifact {location} is larger than {MAX_ARTIFACT_BYTES} bytes; crossdeploy reads at most that much"
        )));
    }
    let bytes = object
        .body
        .collect()
        .await
        .map_err(|e| {
            UpdaterError::Artifact(format!("failed to read the input artifact {location}: {e}"))
        })?
        .to_vec();
    match artifact_path {
        None => Package::new(bytes, &location.to_string()),
        Some(path) => {
            let origin = format!("{path} in {location}");
            let inner = extract(&bytes, path, location)?;
            Package::new(inner, &origin)
        }
    }
}

/// The file at `path` inside the artifact zip, refusing entries that would inflate past the package limit.
fn extract(
    artifact: &[u8],
    path: &str,
    location: &ArtifactLocation,
) -> Result<Vec<u8>, UpdaterError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(artifact)).map_err(|_| {
        UpdaterError::Configuration(format!(
            "the input artifact {location} is not a zip file, so ArtifactPath `{path}` cannot be found in it; leave ArtifactPath out if the artifact itself is the package"
        ))
    })?;
    let wanted = path.trim_start_matches("./");
    let Some(index) = archive.index_for_name(wanted) else {
        let names: Vec<String> = archive
            .file_names()
            .take(20)
            .filter_map(Result::ok)
            .map(|n| n.into_owned())
            .collect();
        return Err(UpdaterError::Configuration(format!(
            "ArtifactPath `{path}` is not in the input artifact {location}; it holds: {}",
            if names.is_empty() {
                "nothing".to_owned()
            } else {
                names.join(", ")
            }
        )));
    };
    let mut entry = archive
        .by_index(index)
        .map_err(|e| UpdaterError::Artifact(format!("failed to open {path} in {location}: {e}")))?;
    if entry.is_dir() {
        return Err(UpdaterError::Configuration(format!(
            "ArtifactPath `{path}` is a folder in {location}; name the package's zip file"
        )));
    }
    if entry.size() > MAX_PACKAGE_BYTES {
        return Err(UpdaterError::Configuration(format!(
            "the package {path} in {location} is {} bytes; a direct upload to Lambda takes at most {MAX_PACKAGE_BYTES} bytes (50 MB)",
            entry.size()
        )));
    }
    let mut out = Vec::with_capacity(entry.size() as usize);
    // `take` guards against an entry whose header understates its size.
    (&mut entry)
        .take(MAX_PACKAGE_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| {
            UpdaterError::Artifact(format!("failed to unzip {path} from {location}: {e}"))
        })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    pub(crate) fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data) in files {
            w.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn loc() -> ArtifactLocation {
        ArtifactLocation {
            bucket: "b".into(),
            key: "k.zip".into(),
        }
    }

    #[test]
    fn code_sha256_is_base64_of_the_packages_sha256() {
        let pkg = zip_of(&[("bootstrap", b"binary")]);
        let p = Package::new(pkg.clone(), "x").unwrap();
        let expected = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&pkg));
        assert_eq!(p.sha256, expected);
        assert_eq!(p.sha256.len(), 44);
    }

    #[test]
    fn the_package_is_found_by_its_path_in_the_artifact() {
        let pkg = zip_of(&[("bootstrap", b"binary")]);
        let artifact = zip_of(&[("README", b"hi"), ("lambda.zip", &pkg)]);
        assert_eq!(extract(&artifact, "lambda.zip", &loc()).unwrap(), pkg);
        assert_eq!(extract(&artifact, "./lambda.zip", &loc()).unwrap(), pkg);
    }

    #[test]
    fn a_missing_path_lists_what_the_artifact_holds() {
        let artifact = zip_of(&[("README", b"hi"), ("other.zip", b"x")]);
        let e = extract(&artifact, "lambda.zip", &loc()).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("`lambda.zip`")
                && msg.contains("README, other.zip")
                && msg.contains("s3://b/k.zip"),
            "{msg}"
        );
        assert!(matches!(e, UpdaterError::Configuration(_)));
    }

    #[test]
    fn an_artifact_that_is_not_a_zip_is_refused() {
        let e = extract(b"just text", "lambda.zip", &loc()).unwrap_err();
        assert!(e.to_string().contains("not a zip"), "{e}");
        let e = Package::new(b"just text".to_vec(), "s3://b/k").unwrap_err();
        assert!(e.to_string().contains("not a zip"), "{e}");
    }

    #[test]
    fn a_package_over_the_direct_upload_limit_is_refused_naming_the_limit() {
        let e = Package::new(vec![0; MAX_PACKAGE_BYTES as usize + 1], "s3://b/k").unwrap_err();
        assert!(e.to_string().contains("50 MB"), "{e}");
    }
}

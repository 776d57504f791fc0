//! The Lambda package: the input artifact itself, or a file inside it.

use crate::UpdaterError;
use base64::Engine;
use crossdeploy_artifact::{extract_file, is_zip, read_artifact};
use crossdeploy_aws::Deadline;
use crossdeploy_protocol::ArtifactLocation;
use sha2::{Digest, Sha256};

/// Lambda takes at most 50 MB of zipped code in a direct upload.
pub const MAX_PACKAGE_BYTES: u64 = 50 * 1024 * 1024;
const PACKAGE_LIMIT: &str = "a direct upload to Lambda takes at most 52428800 bytes (50 MB) zipped. Make the package smaller, or deploy it as a container image";

/// A Lambda deployment package and its CodeSha256 (base64 of its SHA-256, as Lambda reports it).
#[derive(Clone, PartialEq, Eq)]
pub struct Package {
    pub bytes: Vec<u8>,
    pub sha256: String,
}

impl std::fmt::Debug for Package {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Package").field("len", &self.bytes.len()).field("sha256", &self.sha256).finish()
    }
}

impl Package {
    /// Checks that `bytes` is a zip Lambda can take, and computes its CodeSha256.
    pub fn new(bytes: Vec<u8>, origin: &str) -> Result<Self, UpdaterError> {
        if bytes.len() as u64 > MAX_PACKAGE_BYTES {
            return Err(UpdaterError::Configuration(format!(
                "the package {origin} is {} bytes; {PACKAGE_LIMIT}",
                bytes.len()
            )));
        }
        if !is_zip(&bytes) {
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
    s3: &aws_sdk_s3::Client,
    location: &ArtifactLocation,
    artifact_path: Option<&str>,
    deadline: Deadline,
) -> Result<Package, UpdaterError> {
    let artifact = read_artifact(s3, location, deadline).await?;
    match artifact_path {
        None => Package::new(artifact, &location.to_string()),
        Some(path) => {
            let inner = extract_file(&artifact, location, path, MAX_PACKAGE_BYTES, PACKAGE_LIMIT)?;
            Package::new(inner, &format!("{path} in {location}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Write};

    fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data) in files {
            w.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
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
    fn a_package_that_is_not_a_zip_is_refused() {
        let e = Package::new(b"just text".to_vec(), "s3://b/k").unwrap_err();
        assert!(e.to_string().contains("not a zip"), "{e}");
    }

    #[test]
    fn a_package_over_the_direct_upload_limit_is_refused_naming_the_limit() {
        let e = Package::new(vec![0; MAX_PACKAGE_BYTES as usize + 1], "s3://b/k").unwrap_err();
        assert!(e.to_string().contains("50 MB"), "{e}");
    }
}

//! The Lambda package: the input artifact itself, or a file inside it.
//!
//! The package is streamed out of the artifact (ranged GETs, see `crossdeploy_artifact`) into an
//! unlinked file in the function's ephemeral storage, hashed on the way. It is never held in
//! memory whole except for the one moment a direct upload needs it as the request body; a retry
//! reads it again from the file.

use crate::UpdaterError;
use base64::Engine;
use crossdeploy_artifact::{copy_package, is_zip};
use crossdeploy_aws::Deadline;
use crossdeploy_protocol::ArtifactLocation;
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// Lambda's limit on a package's unzipped size (its code and layers): 250 MB.
pub const MAX_UNZIPPED_BYTES: u64 = 262_144_000;
/// The largest zipped package read (Lambda's unzipped limit: a zip is no smaller than that
/// plus its headers only when nothing compresses, which the unzipped check then refuses).
pub const MAX_PACKAGE_BYTES: u64 = MAX_UNZIPPED_BYTES + 16 * 1024 * 1024;
/// Lambda's limit on a package uploaded in the request itself: 50 MB zipped.
pub const MAX_DIRECT_UPLOAD_BYTES: u64 = 50 * 1024 * 1024;
/// Packages up to this size go to Lambda in the request (`ZipFile`); larger ones through the
/// target account's staging bucket. It is Lambda's own limit: a target account needs the staging
/// bucket only once a package passes it, and a direct upload of a package this size stays within
/// the updater's memory (measured in `./scripts/bench`: about 2.3 times the package, its bytes
/// and their base64 in the request body, plus the process; README, "Package sizes").
pub const DIRECT_UPLOAD_THRESHOLD: u64 = MAX_DIRECT_UPLOAD_BYTES;
const PACKAGE_LIMIT: &str = "Lambda takes at most 262144000 bytes (250 MB) unzipped, so crossdeploy reads at most 279 MB zipped. Make the package smaller, or deploy it as a container image";

/// The code a deployment gives a function: a zip package (its size and its CodeSha256, base64
/// of its SHA-256 as Lambda reports it), or a container image (its CodeSha256 is the image's
/// digest in hex, as Lambda reports it for image functions).
#[derive(Clone)]
pub struct Package {
    pub sha256: String,
    /// Zipped size in bytes.
    pub len: u64,
    /// The sum of its files' unzipped sizes, as its central directory records them.
    pub unzipped: u64,
    data: Data,
}

#[derive(Clone)]
enum Data {
    Memory(Arc<Vec<u8>>),
    /// An unlinked file: gone from ephemeral storage once the last clone is dropped.
    Spooled(Arc<std::fs::File>),
    /// A container image, pinned by digest.
    Image(crate::Image),
}

impl std::fmt::Debug for Package {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Package")
            .field("len", &self.len)
            .field("unzipped", &self.unzipped)
            .field("sha256", &self.sha256)
            .finish()
    }
}

impl PartialEq for Package {
    fn eq(&self, other: &Self) -> bool {
        self.sha256 == other.sha256 && self.len == other.len
    }
}

impl Package {
    /// A package held in memory: checks that `bytes` is a zip Lambda can take, and computes its
    /// CodeSha256.
    pub fn new(bytes: Vec<u8>, origin: &str) -> Result<Self, UpdaterError> {
        let len = bytes.len() as u64;
        if !is_zip(&bytes) {
            return Err(not_a_zip(origin));
        }
        let unzipped = unzipped_size(std::io::Cursor::new(&bytes), origin)?;
        check_limits(len, unzipped, origin)?;
        let sha256 = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&bytes));
        Ok(Self { sha256, len, unzipped, data: Data::Memory(Arc::new(bytes)) })
    }

    /// A container image, by digest.
    pub fn image(image: crate::Image) -> Self {
        Self { sha256: image.digest_hex.clone(), len: 0, unzipped: 0, data: Data::Image(image) }
    }

    /// The container image, when this is one.
    pub fn as_image(&self) -> Option<&crate::Image> {
        match &self.data {
            Data::Image(image) => Some(image),
            _ => None,
        }
    }

    /// Whether the package goes to Lambda in the request itself (else through the staging bucket).
    pub fn direct(&self) -> bool {
        self.len <= DIRECT_UPLOAD_THRESHOLD
    }

    /// The whole package (read from the file: the caller owns the copy).
    #[cfg(test)]
    pub(crate) async fn bytes(&self) -> Result<Vec<u8>, UpdaterError> {
        self.range(0, self.len).await
    }

    /// Bytes `start..start + len` of the package (a part of a multipart upload).
    pub(crate) async fn range(&self, start: u64, len: u64) -> Result<Vec<u8>, UpdaterError> {
        match &self.data {
            Data::Image(_) => Err(UpdaterError::Spool("a container image has no package bytes".to_owned())),
            Data::Memory(bytes) => Ok(bytes[start as usize..(start + len) as usize].to_vec()),
            Data::Spooled(file) => {
                let file = file.clone();
                tokio::task::spawn_blocking(move || {
                    let mut out = vec![0; len as usize];
                    file.read_exact_at(&mut out, start).map(|()| out)
                })
                .await
                .map_err(|e| UpdaterError::Spool(format!("the reading thread ended: {e}")))?
                .map_err(|e| {
                    UpdaterError::Spool(format!("failed to read the package back from ephemeral storage: {e}"))
                })
            }
        }
    }
}

fn not_a_zip(origin: &str) -> UpdaterError {
    UpdaterError::Configuration(format!(
        "the package {origin} is not a zip file; Lambda takes a zip of the function's code (set ArtifactPath to the package's path inside the artifact if the artifact holds more than the package)"
    ))
}

fn check_limits(len: u64, unzipped: u64, origin: &str) -> Result<(), UpdaterError> {
    if len > MAX_PACKAGE_BYTES {
        return Err(UpdaterError::Configuration(format!("the package {origin} is {len} bytes; {PACKAGE_LIMIT}")));
    }
    if unzipped > MAX_UNZIPPED_BYTES {
        return Err(UpdaterError::Configuration(format!(
            "the package {origin} unzips to {unzipped} bytes; Lambda takes at most 262144000 bytes (250 MB) unzipped. Make the package smaller (move dependencies to a layer counts too: the limit covers layers), or deploy the function as a container image (up to 10 GB)"
        )));
    }
    Ok(())
}

/// The sum of the zip's files' unzipped sizes, from its central directory.
fn unzipped_size(reader: impl Read + Seek, origin: &str) -> Result<u64, UpdaterError> {
    let mut archive = zip::ZipArchive::new(reader).map_err(|_| not_a_zip(origin))?;
    if let Some(total) = archive.decompressed_size() {
        return Ok(u64::try_from(total).unwrap_or(u64::MAX));
    }
    let mut total = 0u64;
    for i in 0..archive.len() {
        let entry = archive.by_index_raw(i).map_err(|_| not_a_zip(origin))?;
        total = total.saturating_add(entry.size());
    }
    Ok(total)
}

/// Writes into the spool file, hashing what passes.
struct Hashing {
    file: std::fs::File,
    sha: Sha256,
}

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.sha.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// A new file in the ephemeral storage (`TMPDIR`, `/tmp` on Lambda), unlinked at once: it
/// holds the package while the invocation needs it and nothing is left behind after.
fn spool_file() -> std::io::Result<std::fs::File> {
    let dir = std::env::temp_dir();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    for attempt in 0..16 {
        let path = dir.join(format!("crossdeploy-package-{}-{nanos}-{attempt}", std::process::id()));
        match std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path) {
            Ok(file) => {
                std::fs::remove_file(&path)?;
                return Ok(file);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::AlreadyExists, "no free name for a spool file"))
}

/// Reads the package: the whole artifact object, or the file at `artifact_path` inside the
/// artifact zip, streamed into ephemeral storage; then checks it is a zip within Lambda's limits.
pub async fn read_package(
    s3: &aws_sdk_s3::Client,
    location: &ArtifactLocation,
    artifact_path: Option<&str>,
    deadline: Deadline,
) -> Result<Package, UpdaterError> {
    let origin = match artifact_path {
        Some(path) => format!("{path} in {location}"),
        None => location.to_string(),
    };
    let file = spool_file().map_err(|e| {
        UpdaterError::Spool(format!(
            "failed to create a file in {} for the package: {e}",
            std::env::temp_dir().display()
        ))
    })?;
    let out = Hashing { file, sha: Sha256::new() };
    let (out, len) = copy_package(s3, location, artifact_path, out, MAX_PACKAGE_BYTES, PACKAGE_LIMIT, deadline).await?;
    let sha256 = base64::engine::general_purpose::STANDARD.encode(out.sha.finalize());
    let file = Arc::new(out.file);
    let check = file.clone();
    let checked_origin = origin.clone();
    let unzipped = tokio::task::spawn_blocking(move || unzipped_size(&*check, &checked_origin))
        .await
        .map_err(|e| UpdaterError::Spool(format!("the checking thread ended: {e}")))??;
    check_limits(len, unzipped, &origin)?;
    tracing::info!(bytes = len, unzipped, sha256 = %sha256, "package read");
    Ok(Package { sha256, len, unzipped, data: Data::Spooled(file) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

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
        assert_eq!(p.unzipped, 6);
    }

    #[test]
    fn a_package_that_is_not_a_zip_is_refused() {
        let e = Package::new(b"just text".to_vec(), "s3://b/k").unwrap_err();
        assert!(e.to_string().contains("not a zip"), "{e}");
    }

    #[test]
    fn a_package_that_unzips_past_lambdas_limit_is_refused_naming_the_limit() {
        // 251 MB of zeros deflate to a few hundred KB: small zipped, too large unzipped.
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        w.start_file("big.bin", zip::write::SimpleFileOptions::default().large_file(true)).unwrap();
        let chunk = vec![0u8; 1024 * 1024];
        for _ in 0..251 {
            w.write_all(&chunk).unwrap();
        }
        let bytes = w.finish().unwrap().into_inner();
        assert!(bytes.len() < 2 * 1024 * 1024);
        let e = Package::new(bytes, "s3://b/k").unwrap_err();
        assert!(e.to_string().contains("262144000 bytes (250 MB) unzipped"), "{e}");
        assert!(matches!(e, UpdaterError::Configuration(_)));
    }

    #[test]
    fn spooled_packages_are_read_back_by_range() {
        let mut file = spool_file().unwrap();
        file.write_all(b"0123456789").unwrap();
        let p = Package { sha256: String::new(), len: 10, unzipped: 0, data: Data::Spooled(Arc::new(file)) };
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert_eq!(rt.block_on(p.range(3, 4)).unwrap(), b"3456");
        assert_eq!(rt.block_on(p.bytes()).unwrap(), b"0123456789");
    }
}

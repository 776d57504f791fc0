//! A pipeline's input artifact: read from the artifact bucket with the function's own
//! credentials (the bucket and its key are never opened to target accounts), and a file found
//! inside its zip.
//!
//! The artifact is never held whole: it is read by ranged GETs ([`RangedReader`], a `Read + Seek`
//! the zip crate reads through): the zip's end records and central directory, then only the
//! entry wanted, streamed. Memory does not grow with the artifact's size; what its directory
//! may cost is bounded ([`DIRECTORY_BUDGET`]).

mod ranged;

pub use ranged::{RangedReader, Source};

use aws_sdk_s3::Client as S3;
use crossdeploy_aws::{is_transient, retry, Backoff, Deadline, DeadlineReached, ErrorInfo};
use crossdeploy_protocol::{ArtifactLocation, FailureType};
use std::io::{Read, Seek, Write};

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("the input artifact {location} does not exist ({error}); the pipeline's artifact store lost it or it expired: re-run the pipeline from its source")]
    Missing { location: ArtifactLocation, error: ErrorInfo },
    #[error("failed to read the input artifact {location} in the shared services account: {error}")]
    Read { location: ArtifactLocation, error: ErrorInfo },
    #[error("the input artifact {location} changed while it was read (its ETag moved); re-run the pipeline: an artifact is written once")]
    Changed { location: ArtifactLocation },
    #[error("{what} is {size} bytes; {limit_text}")]
    TooLarge { what: String, size: u64, limit_text: String },
    #[error("the input artifact {location} is not a zip file, so `{path}` cannot be found in it")]
    NotAZip { location: ArtifactLocation, path: String },
    #[error("`{path}` in {location} cannot be read: {reason}")]
    Corrupt { location: ArtifactLocation, path: String, reason: String },
    #[error("`{path}` is not in the input artifact {location}; it holds: {holds}")]
    NotFound { location: ArtifactLocation, path: String, holds: String },
    #[error("`{path}` in {location} is a folder, not a file")]
    IsFolder { location: ArtifactLocation, path: String },
    #[error("failed to write what was read from {location}: {reason}")]
    Write { location: ArtifactLocation, reason: String },
}

impl ArtifactError {
    pub fn failure_type(&self) -> FailureType {
        match self {
            ArtifactError::Read { error, .. } if error.is_access_denied() => FailureType::PermissionError,
            ArtifactError::Missing { .. }
            | ArtifactError::Read { .. }
            | ArtifactError::Changed { .. }
            | ArtifactError::Write { .. } => FailureType::JobFailed,
            ArtifactError::TooLarge { .. }
            | ArtifactError::NotAZip { .. }
            | ArtifactError::Corrupt { .. }
            | ArtifactError::NotFound { .. }
            | ArtifactError::IsFolder { .. } => FailureType::ConfigurationError,
        }
    }
}

/// One attempt's failure to read the object.
enum Fetch {
    Failed { error: ErrorInfo, missing: bool, changed: bool, transient: bool },
}

impl DeadlineReached for Fetch {
    fn deadline_reached(what: &str) -> Self {
        Fetch::Failed {
            error: ErrorInfo { code: None, message: format!("{what}: cut at the deadline before S3 answered") },
            missing: false,
            changed: false,
            transient: false,
        }
    }
}

impl Fetch {
    fn from_sdk<E>(e: &aws_sdk_s3::error::SdkError<E, aws_smithy_runtime_api::http::Response>, missing: bool) -> Self
    where
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        let status = e.raw_response().map(|r| r.status().as_u16());
        Fetch::Failed {
            missing: missing || status == Some(404),
            changed: status == Some(412),
            transient: is_transient(e),
            error: ErrorInfo::from_sdk(e),
        }
    }

    fn into_error(self, location: &ArtifactLocation) -> ArtifactError {
        match self {
            Fetch::Failed { changed: true, .. } => ArtifactError::Changed { location: location.clone() },
            Fetch::Failed { error, missing: true, .. } => ArtifactError::Missing { location: location.clone(), error },
            Fetch::Failed { error, .. } => ArtifactError::Read { location: location.clone(), error },
        }
    }
}

fn retryable(f: &Fetch) -> bool {
    matches!(f, Fetch::Failed { transient: true, .. })
}

/// The artifact object in S3, read one range at a time. A transient failure (throttling, a 5xx,
/// a connection dropped before or while the body arrives) is retried until the deadline:
/// reading changes nothing. Every range is read under the ETag the object had when opened, so a
/// reader never stitches two versions of an object together.
pub struct S3Object {
    s3: S3,
    location: ArtifactLocation,
    etag: Option<String>,
    size: u64,
    deadline: Deadline,
    runtime: tokio::runtime::Handle,
}

impl S3Object {
    /// One GET of the object's last bytes (at most [`ranged::FIRST_BLOCK`]: where a zip keeps
    /// its end records and directory; all of a small object), which also gives its size and
    /// ETag. Returns the object and those bytes. Must be called within a Tokio runtime.
    pub async fn open(
        s3: &S3,
        location: &ArtifactLocation,
        deadline: Deadline,
    ) -> Result<(Self, Vec<u8>), ArtifactError> {
        let what = format!("reading the end of the input artifact {location}");
        let suffix = format!("bytes=-{}", ranged::FIRST_BLOCK);
        let (size, etag, tail) = retry(&what, Backoff::CONTROL_PLANE, deadline, retryable, || async {
            let object = s3.get_object().bucket(&location.bucket).key(&location.key).range(&suffix).send().await;
            let object = match object {
                Ok(object) => object,
                // No range of an empty object can be served.
                Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 416) => {
                    return Ok((0, None, Vec::new()))
                }
                Err(e) => {
                    let missing = e.as_service_error().is_some_and(|s| s.is_no_such_key());
                    return Err(Fetch::from_sdk(&e, missing));
                }
            };
            // "bytes <first>-<last>/<size>"; without it, S3 sent the whole object.
            let total = object.content_range.as_deref().and_then(|r| r.rsplit('/').next()?.parse::<u64>().ok());
            let bytes = bounded(object.body, ranged::FIRST_BLOCK).await?;
            let size = total.unwrap_or(bytes.len() as u64);
            Ok((size, object.e_tag, bytes))
        })
        .await
        .map_err(|f| f.into_error(location))?;
        if tail.len() as u64 > size {
            return Err(ArtifactError::Read {
                location: location.clone(),
                error: ErrorInfo {
                    code: None,
                    message: format!("S3 answered {} bytes of an object of {size}", tail.len()),
                },
            });
        }
        let object = Self {
            s3: s3.clone(),
            location: location.clone(),
            etag,
            size,
            deadline,
            runtime: tokio::runtime::Handle::current(),
        };
        Ok((object, tail))
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    async fn get_range(&self, start: u64, len: u64) -> Result<Vec<u8>, ArtifactError> {
        let location = &self.location;
        let what = format!("reading bytes {start}..{} of the input artifact {location}", start + len);
        let range = format!("bytes={start}-{}", start + len - 1);
        retry(&what, Backoff::CONTROL_PLANE, self.deadline, retryable, || async {
            let object = self
                .s3
                .get_object()
                .bucket(&location.bucket)
                .key(&location.key)
                .range(&range)
                .set_if_match(self.etag.clone())
                .send()
                .await
                .map_err(|e| {
                    let missing = e.as_service_error().is_some_and(|s| s.is_no_such_key());
                    Fetch::from_sdk(&e, missing)
                })?;
            bounded(object.body, len).await
        })
        .await
        .map_err(|f| f.into_error(location))
    }
}

/// A body of at most `len` bytes. Chunks are appended as they arrive: the range is held once.
/// An answer longer than the range asked for (a server ignoring Range) is cut off, never held
/// whole.
async fn bounded(mut body: aws_sdk_s3::primitives::ByteStream, len: u64) -> Result<Vec<u8>, Fetch> {
    let mut bytes = Vec::with_capacity(len.min(ranged::MAX_BLOCK) as usize);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| Fetch::Failed {
            // A body cut short is a dropped connection: transient.
            error: ErrorInfo { code: None, message: format!("the object's body was cut short: {e}") },
            missing: false,
            changed: false,
            transient: true,
        })?;
        if (bytes.len() + chunk.len()) as u64 > len {
            return Err(Fetch::Failed {
                error: ErrorInfo {
                    code: None,
                    message: format!("S3 answered a range of {len} bytes with more (Range ignored)"),
                },
                missing: false,
                changed: false,
                transient: false,
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

impl Source for S3Object {
    fn fetch(&mut self, start: u64, len: u64) -> Result<Vec<u8>, ArtifactError> {
        // Called on a blocking thread (see `on_blocking_thread`), never on a runtime worker.
        self.runtime.clone().block_on(self.get_range(start, len))
    }
}

/// What may be read of an artifact beyond the entry wanted: its end records and central
/// directory (about 80,000 files' worth), and the ranges read ahead around the entry.
pub const DIRECTORY_BUDGET: u64 = 8 * 1024 * 1024 + 2 * ranged::MAX_BLOCK;
const DIRECTORY_LIMIT: &str = "crossdeploy reads at most 8 MiB of an artifact's zip directory (about 80,000 files) besides the file it deploys; put what the deployment needs in an artifact of its own";

/// Runs `work` over the artifact's ranged reader on a blocking thread: the zip crate reads
/// synchronously, and each read it makes is a ranged GET waited for there. (Tests on a
/// current_thread runtime with a paused clock must not let a read back off: the clock does not
/// advance on its own while a blocking task runs.)
async fn on_blocking_thread<T: Send + 'static>(
    s3: &S3,
    location: &ArtifactLocation,
    deadline: Deadline,
    work: impl FnOnce(RangedReader<S3Object>) -> Result<T, ArtifactError> + Send + 'static,
) -> Result<T, ArtifactError> {
    let (object, tail) = S3Object::open(s3, location, deadline).await?;
    let reader = RangedReader::new(object.size(), object).with_tail(tail);
    tokio::task::spawn_blocking(move || work(reader)).await.map_err(|e| ArtifactError::Read {
        location: location.clone(),
        error: ErrorInfo { code: None, message: format!("the reading thread ended: {e}") },
    })?
}

/// The file at `path` inside the artifact zip, read by ranged GETs (the central directory, then
/// the entry), refused when it is larger than `max` bytes (`limit_text` says why, e.g. "an image
/// file is at most 100 KB").
pub async fn read_file(
    s3: &S3,
    location: &ArtifactLocation,
    path: &str,
    max: u64,
    limit_text: &str,
    deadline: Deadline,
) -> Result<Vec<u8>, ArtifactError> {
    let (loc, path, limit) = (location.clone(), path.to_owned(), limit_text.to_owned());
    on_blocking_thread(s3, location, deadline, move |reader| {
        let reader = reader.with_budget(DIRECTORY_BUDGET + max, DIRECTORY_LIMIT.to_owned());
        let (out, _) = copy_entry(reader, &loc, &path, Vec::new(), max, &limit)?;
        Ok(out)
    })
    .await
}

/// Copies the package into `out`: the whole artifact object when `path` is `None`, else the file
/// at `path` inside the artifact zip, streamed. Refused when it is larger than `max` bytes.
/// Returns `out` and the number of bytes written.
pub async fn copy_package<W: Write + Send + 'static>(
    s3: &S3,
    location: &ArtifactLocation,
    path: Option<&str>,
    out: W,
    max: u64,
    limit_text: &str,
    deadline: Deadline,
) -> Result<(W, u64), ArtifactError> {
    let (loc, path, limit) = (location.clone(), path.map(str::to_owned), limit_text.to_owned());
    on_blocking_thread(s3, location, deadline, move |reader| match path {
        Some(path) => {
            let reader = reader.with_budget(DIRECTORY_BUDGET.saturating_add(max), DIRECTORY_LIMIT.to_owned());
            copy_entry(reader, &loc, &path, out, max, &limit)
        }
        None => copy_whole(reader, &loc, out, max, &limit),
    })
    .await
}

/// The whole object, copied into `out`.
pub fn copy_whole<S: Source, W: Write>(
    mut reader: RangedReader<S>,
    location: &ArtifactLocation,
    out: W,
    max: u64,
    limit_text: &str,
) -> Result<(W, u64), ArtifactError> {
    if reader.size() > max {
        return Err(ArtifactError::TooLarge {
            what: format!("the input artifact {location}"),
            size: reader.size(),
            limit_text: limit_text.to_owned(),
        });
    }
    let mut out = Tagged { inner: out, location };
    let copied = std::io::copy(&mut reader, &mut out).map_err(|e| {
        from_io(e, |reason| ArtifactError::Read {
            location: location.clone(),
            error: ErrorInfo { code: None, message: reason },
        })
    })?;
    Ok((out.inner, copied))
}

/// The file at `path` inside the zip `reader` reads, copied into `out`, refused when it is
/// larger than `max` bytes. Only the zip's end records, its central directory and that entry
/// are read.
pub fn copy_entry<R: Read + Seek, W: Write>(
    reader: R,
    location: &ArtifactLocation,
    path: &str,
    out: W,
    max: u64,
    limit_text: &str,
) -> Result<(W, u64), ArtifactError> {
    let not_a_zip = |_: String| ArtifactError::NotAZip { location: location.clone(), path: path.to_owned() };
    let corrupt = |reason: String| ArtifactError::Corrupt { location: location.clone(), path: path.to_owned(), reason };
    let mut archive = zip::ZipArchive::new(reader).map_err(|e| from_zip(e, not_a_zip))?;
    let wanted = path.trim_start_matches("./");
    let Some(index) = archive.index_for_name(wanted) else {
        let names: Vec<String> = archive.file_names().take(20).filter_map(Result::ok).map(|n| n.into_owned()).collect();
        return Err(ArtifactError::NotFound {
            location: location.clone(),
            path: path.to_owned(),
            holds: if names.is_empty() { "nothing".to_owned() } else { names.join(", ") },
        });
    };
    let mut entry = archive.by_index(index).map_err(|e| from_zip(e, corrupt))?;
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
    let mut out = Tagged { inner: out, location };
    // `take` guards against an entry whose header understates its size.
    let copied = std::io::copy(&mut (&mut entry).take(max + 1), &mut out).map_err(|e| from_io(e, corrupt))?;
    if copied > max {
        return Err(too_large(copied));
    }
    Ok((out.inner, copied))
}

/// The error an I/O failure carries when it is one of ours (a ranged read or a write that
/// failed), else `otherwise` of its text (a corrupt zip).
fn from_io(e: std::io::Error, otherwise: impl FnOnce(String) -> ArtifactError) -> ArtifactError {
    let text = e.to_string();
    match e.into_inner().map(|inner| inner.downcast::<ArtifactError>()) {
        Some(Ok(ours)) => *ours,
        _ => otherwise(text),
    }
}

fn from_zip(e: zip::result::ZipError, otherwise: impl FnOnce(String) -> ArtifactError) -> ArtifactError {
    match e {
        zip::result::ZipError::Io(io) => from_io(io, otherwise),
        other => otherwise(other.to_string()),
    }
}

/// A writer whose failures say they are writes (so a full disk is not reported as a corrupt zip).
struct Tagged<'a, W> {
    inner: W,
    location: &'a ArtifactLocation,
}

impl<W: Write> Write for Tagged<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf).map_err(|e| self.tag(e))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush().map_err(|e| self.tag(e))
    }
}

impl<W> Tagged<'_, W> {
    fn tag(&self, e: std::io::Error) -> std::io::Error {
        std::io::Error::other(ArtifactError::Write { location: self.location.clone(), reason: e.to_string() })
    }
}

/// Whether `bytes` is a zip archive.
pub fn is_zip(bytes: &[u8]) -> bool {
    zip::ZipArchive::new(std::io::Cursor::new(bytes)).is_ok()
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

    fn loc() -> ArtifactLocation {
        ArtifactLocation { bucket: "b".into(), key: "k.zip".into() }
    }

    /// An object in memory, read through the same ranged reader as S3's.
    struct Memory(Vec<u8>);

    impl Source for Memory {
        fn fetch(&mut self, start: u64, len: u64) -> Result<Vec<u8>, ArtifactError> {
            Ok(self.0[start as usize..(start + len) as usize].to_vec())
        }
    }

    fn ranged(bytes: Vec<u8>) -> RangedReader<Memory> {
        RangedReader::new(bytes.len() as u64, Memory(bytes))
    }

    fn extract(artifact: Vec<u8>, path: &str, max: u64, limit: &str) -> Result<Vec<u8>, ArtifactError> {
        copy_entry(ranged(artifact), &loc(), path, Vec::new(), max, limit).map(|(out, _)| out)
    }

    /// An artifact of 164 KiB whose `imagedefinitions.json` lies outside its last 64 KiB (the
    /// first GET): reading it takes a ranged GET under the object's ETag.
    fn large_artifact() -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        w.start_file("imagedefinitions.json", stored).unwrap();
        w.write_all(b"[]").unwrap();
        w.start_file("site.bin", stored).unwrap();
        w.write_all(&vec![7u8; 164 * 1024]).unwrap();
        w.finish().unwrap().into_inner()
    }

    /// S3's answer to the first GET (the object's last 64 KiB, or all of a smaller one).
    fn tail_of(artifact: &[u8]) -> aws_sdk_s3::operation::get_object::GetObjectOutput {
        let size = artifact.len();
        let first = size.saturating_sub(64 * 1024);
        aws_sdk_s3::operation::get_object::GetObjectOutput::builder()
            .content_range(format!("bytes {first}-{}/{size}", size - 1))
            .e_tag("\"e1\"")
            .body(aws_sdk_s3::primitives::ByteStream::from(artifact[first..].to_vec()))
            .build()
    }

    fn status(code: u16, body: &'static str) -> aws_smithy_runtime_api::http::Response {
        aws_smithy_runtime_api::http::Response::new(
            aws_smithy_runtime_api::http::StatusCode::try_from(code).unwrap(),
            aws_smithy_types::body::SdkBody::from(body),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_artifact_is_read_in_one_get_and_a_transient_failure_is_retried() {
        use aws_smithy_mocks::{mock, mock_client, RuleMode};
        let artifact = zip_of(&[("imagedefinitions.json", b"[]")]);
        let flaky = mock!(S3::get_object)
            .match_requests(|r| r.range() == Some("bytes=-65536") && r.if_match().is_none())
            .sequence()
            .http_status(503, None)
            .times(2)
            .output(move || tail_of(&artifact))
            .build();
        let s3 = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&flaky]);
        let deadline = Deadline::after(std::time::Duration::from_secs(60));
        let file = read_file(&s3, &loc(), "imagedefinitions.json", 100, "", deadline).await.unwrap();
        assert_eq!(file, b"[]");
        assert_eq!(flaky.num_calls(), 3, "two failures, then the one GET that reads it all");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_range_outside_the_end_is_read_under_the_objects_etag() {
        use aws_smithy_mocks::{mock, mock_client, RuleMode};
        let artifact = large_artifact();
        let (tail_src, head_src) = (artifact.clone(), artifact.clone());
        let tail = mock!(S3::get_object)
            .match_requests(|r| r.range() == Some("bytes=-65536"))
            .then_output(move || tail_of(&tail_src));
        let start = mock!(S3::get_object)
            .match_requests(|r| r.range() == Some("bytes=0-65535") && r.if_match() == Some("\"e1\""))
            .sequence()
            .http_status(503, None)
            .output(move || {
                aws_sdk_s3::operation::get_object::GetObjectOutput::builder()
                    .body(aws_sdk_s3::primitives::ByteStream::from(head_src[..65536].to_vec()))
                    .build()
            })
            .build();
        let s3 = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&tail, &start]);
        let deadline = Deadline::after(std::time::Duration::from_secs(60));
        let file = read_file(&s3, &loc(), "imagedefinitions.json", 100, "", deadline).await.unwrap();
        assert_eq!(file, b"[]");
        assert_eq!((tail.num_calls(), start.num_calls()), (1, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_missing_artifact_is_not_retried_and_says_so() {
        use aws_smithy_mocks::{mock, mock_client, RuleMode};
        let missing = mock!(S3::get_object).then_http_response(|| {
            status(404, "<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>")
        });
        let s3 = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&missing]);
        let deadline = Deadline::after(std::time::Duration::from_secs(60));
        let e = read_file(&s3, &loc(), "x", 10, "", deadline).await.unwrap_err();
        assert!(matches!(e, ArtifactError::Missing { .. }), "{e}");
        assert_eq!(missing.num_calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_artifact_is_not_a_zip() {
        use aws_smithy_mocks::{mock, mock_client, RuleMode};
        let empty = mock!(S3::get_object).then_http_response(|| {
            status(
                416,
                "<Error><Code>InvalidRange</Code><Message>The requested range is not satisfiable</Message></Error>",
            )
        });
        let s3 = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&empty]);
        let deadline = Deadline::after(std::time::Duration::from_secs(60));
        let e = read_file(&s3, &loc(), "x", 10, "", deadline).await.unwrap_err();
        assert!(matches!(e, ArtifactError::NotAZip { .. }), "{e}");
        assert_eq!(empty.num_calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_failing_until_the_deadline_ends_there() {
        use aws_smithy_mocks::{mock, mock_client, RuleMode};
        let down = mock!(S3::get_object).then_http_response(|| status(503, ""));
        let s3 = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&down]);
        let started = tokio::time::Instant::now();
        let deadline = Deadline::after(std::time::Duration::from_secs(20));
        let e = read_file(&s3, &loc(), "x", 10, "", deadline).await.unwrap_err();
        assert!(matches!(e, ArtifactError::Read { .. }), "{e}");
        assert!(e.to_string().contains("s3://b/k.zip"), "{e}");
        assert!(started.elapsed() <= std::time::Duration::from_secs(20));
        assert!(down.num_calls() > 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_artifact_replaced_while_it_is_read_is_refused() {
        use aws_smithy_mocks::{mock, mock_client, RuleMode};
        let artifact = large_artifact();
        let tail = mock!(S3::get_object)
            .match_requests(|r| r.range() == Some("bytes=-65536"))
            .then_output(move || tail_of(&artifact));
        let moved = mock!(S3::get_object).match_requests(|r| r.if_match() == Some("\"e1\"")).then_http_response(|| {
            status(
                412,
                "<Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message></Error>",
            )
        });
        let s3 = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&tail, &moved]);
        let deadline = Deadline::after(std::time::Duration::from_secs(60));
        let e = read_file(&s3, &loc(), "imagedefinitions.json", 10, "", deadline).await.unwrap_err();
        assert!(matches!(e, ArtifactError::Changed { .. }), "{e}");
        assert_eq!(moved.num_calls(), 1);
    }

    #[test]
    fn a_file_is_found_by_its_path() {
        let artifact = zip_of(&[("README", b"hi"), ("dist/lambda.zip", b"pkg")]);
        assert_eq!(extract(artifact.clone(), "dist/lambda.zip", 10, "").unwrap(), b"pkg");
        assert_eq!(extract(artifact, "./dist/lambda.zip", 10, "").unwrap(), b"pkg");
    }

    #[test]
    fn a_small_file_is_read_from_a_large_artifact_without_reading_the_rest() {
        // 64 MiB of incompressible-looking data beside a small file.
        let big: Vec<u8> = (0..64u32 * 1024 * 1024).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        w.start_file("site.bin", stored).unwrap();
        w.write_all(&big).unwrap();
        w.start_file("imagedefinitions.json", stored).unwrap();
        w.write_all(b"[]").unwrap();
        let artifact = w.finish().unwrap().into_inner();
        let mut reader = ranged(artifact);
        let mut archive = zip::ZipArchive::new(&mut reader).unwrap();
        let mut out = Vec::new();
        archive.by_name("imagedefinitions.json").unwrap().read_to_end(&mut out).unwrap();
        drop(archive);
        assert_eq!(out, b"[]");
        assert!(reader.fetched() < 512 * 1024, "fetched {} bytes", reader.fetched());
    }

    #[test]
    fn an_artifact_whose_directory_is_over_the_budget_is_refused_naming_the_limit() {
        let names: Vec<String> = (0..5000).map(|i| format!("node_modules/pkg-{i}/index.js")).collect();
        let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
        let artifact = zip_of(&files);
        let reader = ranged(artifact).with_budget(64 * 1024, DIRECTORY_LIMIT.to_owned());
        let e = copy_entry(reader, &loc(), "node_modules/pkg-1/index.js", Vec::new(), 10, "").unwrap_err();
        assert!(matches!(e, ArtifactError::TooLarge { .. }), "{e}");
        assert_eq!(e.failure_type(), FailureType::ConfigurationError);
        assert!(e.to_string().contains("80,000 files"), "{e}");
    }

    #[test]
    fn a_missing_path_lists_what_the_artifact_holds() {
        let artifact = zip_of(&[("README", b"hi"), ("other.zip", b"x")]);
        let e = extract(artifact, "lambda.zip", 10, "").unwrap_err();
        assert_eq!(e.failure_type(), FailureType::ConfigurationError);
        let msg = e.to_string();
        assert!(
            msg.contains("`lambda.zip`") && msg.contains("README, other.zip") && msg.contains("s3://b/k.zip"),
            "{msg}"
        );
    }

    #[test]
    fn an_artifact_that_is_not_a_zip_is_refused() {
        let e = extract(b"just text".to_vec(), "lambda.zip", 10, "").unwrap_err();
        assert!(e.to_string().contains("not a zip"), "{e}");
        assert!(!is_zip(b"just text"));
    }

    #[test]
    fn a_file_over_the_limit_is_refused_naming_the_limit() {
        let artifact = zip_of(&[("imagedefinitions.json", &[b' '; 200])]);
        let e = extract(artifact, "imagedefinitions.json", 100, "at most 100 bytes are read").unwrap_err();
        assert_eq!(e.failure_type(), FailureType::ConfigurationError);
        assert!(e.to_string().contains("200 bytes; at most 100 bytes are read"), "{e}");
    }

    #[test]
    fn a_whole_object_over_the_limit_is_refused_before_it_is_read() {
        let mut reader = ranged(vec![0; 1000]);
        reader.seek(std::io::SeekFrom::Start(0)).unwrap();
        let e = copy_whole(reader, &loc(), Vec::new(), 999, "at most 999").unwrap_err();
        assert!(e.to_string().contains("1000 bytes; at most 999"), "{e}");
    }

    #[test]
    fn a_write_that_fails_is_reported_as_a_write() {
        #[derive(Debug)]
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::new(std::io::ErrorKind::StorageFull, "no space left on device"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let artifact = zip_of(&[("lambda.zip", b"pkg")]);
        let e = copy_entry(ranged(artifact), &loc(), "lambda.zip", Full, 10, "").unwrap_err();
        assert!(matches!(e, ArtifactError::Write { .. }), "{e}");
        assert!(e.to_string().contains("no space left"), "{e}");
    }
}

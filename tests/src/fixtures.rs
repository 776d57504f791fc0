//! Packages and artifacts as a build would produce them.

use base64::Engine;
use sha2::{Digest, Sha256};
use std::io::{Cursor, Write};

/// A zip holding these files.
pub fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in files {
        // Unwrapping is fine: writing to memory cannot fail but for a bug here.
        w.start_file(*name, zip::write::SimpleFileOptions::default()).expect("zip entry");
        w.write_all(data).expect("zip write");
    }
    w.finish().expect("zip finish").into_inner()
}

/// A Lambda package (`bootstrap` inside), distinct per `marker`.
pub fn lambda_package(marker: &str) -> Vec<u8> {
    zip_of(&[("bootstrap", format!("#!/bin/sh\n# build {marker}\n").as_bytes())])
}

/// A build output artifact holding `package` at `path`, beside other build files.
pub fn build_artifact(path: &str, package: &[u8]) -> Vec<u8> {
    zip_of(&[("README.md", b"build output"), (path, package), ("imagedefinitions.json", b"[]")])
}

/// Lambda's CodeSha256 of a package: base64 of its SHA-256.
pub fn code_sha256(package: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(package))
}

/// An EventBridge event as AWS sends it, from deploy-rollback's fixtures
/// (`functions/deploy-rollback/tests/events/<name>`), with `changes` set at JSON pointers.
pub fn aws_event(name: &str, changes: &[(&str, serde_json::Value)]) -> crate::Result<serde_json::Value> {
    let path = crate::workspace_root().join("functions/deploy-rollback/tests/events").join(name);
    let mut event: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    for (pointer, value) in changes {
        *event.pointer_mut(pointer).ok_or_else(|| format!("{name} has no {pointer}"))? = value.clone();
    }
    Ok(event)
}

/// Now, as EventBridge writes times (RFC 3339, seconds), shifted by `offset_secs`.
pub fn event_time(offset_secs: i64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let t = aws_smithy_types::DateTime::from_secs((now as i64).saturating_add(offset_secs));
    t.fmt(aws_smithy_types::date_time::Format::DateTime).unwrap_or_default()
}

/// `len` bytes that do not compress (xorshift), so a zip of them is as large as they are.
pub fn incompressible(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A zip holding these files uncompressed (as a build zips what does not compress; and quick to
/// make in a debug build, where deflating tens of megabytes takes seconds).
pub fn zip_stored(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let stored = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(files.iter().any(|(_, d)| d.len() as u64 >= u32::MAX as u64));
    for (name, data) in files {
        w.start_file(*name, stored).expect("zip entry");
        w.write_all(data).expect("zip write");
    }
    w.finish().expect("zip finish").into_inner()
}

/// A Lambda package of about `len` bytes zipped: a bootstrap and `len` bytes that do not
/// compress, distinct per `marker`.
pub fn large_lambda_package(marker: &str, len: usize) -> Vec<u8> {
    let seed = marker.bytes().fold(len as u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    let data = incompressible(len, seed);
    zip_stored(&[("bootstrap", format!("#!/bin/sh\n# build {marker}\n").as_bytes()), ("vendor.bin", &data)])
}

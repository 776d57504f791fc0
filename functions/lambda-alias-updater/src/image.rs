//! Container-image functions: the image named in the input artifact (an ECR source action's
//! `imageDetail.json`, or any file of that shape named by `ImageFile`).

use serde_json::Value;

/// The image file is read whole; a larger one is not an image file.
pub const MAX_IMAGE_FILE_BYTES: u64 = 100 * 1024;

/// A container image pinned by digest: what Lambda runs is the digest, whatever a tag says later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The repository, without tag or digest: `<account>.dkr.ecr.<region>.amazonaws.com/<name>`.
    pub repository: String,
    /// The image manifest's SHA-256 in hex: Lambda reports it as the function's CodeSha256.
    pub digest_hex: String,
    /// The image as the file named it (with its tag, if it had one).
    pub named: String,
}

impl Image {
    /// The URI Lambda is given: by digest, so the deployment is the image the pipeline built.
    pub fn uri(&self) -> String {
        format!("{}@sha256:{}", self.repository, self.digest_hex)
    }
}

fn is_hex_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Parses the image file: a JSON object with `ImageURI` (`repo@sha256:<hex>` or `repo:tag`) and,
/// when the URI has no digest, `ImageDigest` (`sha256:<hex>`), as an ECR source action writes.
/// An image named by tag alone is refused: a tag can move between the build and the deployment,
/// and only a digest lets a retry or a redeployment recognise what is already deployed.
pub fn parse_image_file(bytes: &[u8], file: &str) -> Result<Image, String> {
    let shape = "expected an ECR source action's imageDetail.json: {\"ImageURI\": \"<account>.dkr.ecr.<region>.amazonaws.com/<repository>@sha256:<digest>\"}";
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("{file} is not JSON ({e}); {shape}"))?;
    let Value::Object(detail) = value else {
        return Err(format!("{file} is not a JSON object; {shape}"));
    };
    let field = |k: &str| detail.get(k).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());
    let named = field("ImageURI").ok_or_else(|| format!("{file} has no `ImageURI`; {shape}"))?;
    let (repository, in_uri) = match named.split_once('@') {
        Some((repo, digest)) => (repo, Some(digest)),
        None => {
            // `host[:port]/path[:tag]`: a tag is a colon after the last slash.
            let last_slash = named.rfind('/').unwrap_or(0);
            match named[last_slash..].rfind(':') {
                Some(i) => (&named[..last_slash + i], None),
                None => (named, None),
            }
        }
    };
    if !repository.contains(".dkr.ecr.") || !repository.contains('/') {
        return Err(format!(
            "`{named}` in {file} is not an Amazon ECR image; Lambda runs images from ECR only (<account>.dkr.ecr.<region>.amazonaws.com/<repository>)"
        ));
    }
    let hex = |d: &str, whence: &str| -> Result<String, String> {
        match d.strip_prefix("sha256:") {
            Some(h) if is_hex_digest(h) => Ok(h.to_owned()),
            _ => Err(format!("{whence} in {file} is not a digest (sha256: and 64 lowercase hex digits): `{d}`")),
        }
    };
    let from_uri = in_uri.map(|d| hex(d, "the digest of ImageURI")).transpose()?;
    let from_field = field("ImageDigest").map(|d| hex(d, "ImageDigest")).transpose()?;
    let digest_hex = match (from_uri, from_field) {
        (Some(a), Some(b)) if a != b => {
            return Err(format!("{file} names two digests: sha256:{a} in ImageURI and sha256:{b} in ImageDigest"))
        }
        (Some(d), _) | (None, Some(d)) => d,
        (None, None) => {
            return Err(format!(
                "`{named}` in {file} names the image by tag only; crossdeploy deploys images by digest (a tag can move between the build and the deployment). Give ImageURI as <repository>@sha256:<digest>, or add ImageDigest, as an ECR source action's imageDetail.json does"
            ))
        }
    };
    Ok(Image { repository: repository.to_owned(), digest_hex, named: named.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPO: &str = "111111111111.dkr.ecr.us-east-1.amazonaws.com/orders";
    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn an_ecr_source_actions_image_detail_is_read_by_digest() {
        let detail = format!(
            r#"{{"ImageSizeInBytes":"1","ImageDigest":"sha256:{HEX}","Version":"1.0","RegistryId":"111111111111","RepositoryName":"orders","ImageURI":"{REPO}@sha256:{HEX}","ImageTags":["latest"]}}"#
        );
        let image = parse_image_file(detail.as_bytes(), "imageDetail.json").unwrap();
        assert_eq!(image.uri(), format!("{REPO}@sha256:{HEX}"));
        assert_eq!(image.digest_hex, HEX);
    }

    #[test]
    fn a_tag_with_a_digest_beside_it_is_pinned_to_the_digest() {
        let detail = format!(r#"{{"ImageURI":"{REPO}:v2","ImageDigest":"sha256:{HEX}"}}"#);
        let image = parse_image_file(detail.as_bytes(), "f").unwrap();
        assert_eq!(image.repository, REPO);
        assert_eq!(image.uri(), format!("{REPO}@sha256:{HEX}"));
        assert_eq!(image.named, format!("{REPO}:v2"));
    }

    #[test]
    fn bad_image_files_are_refused_saying_why() {
        for (file, needle) in [
            ("nope".to_owned(), "not JSON"),
            ("[]".to_owned(), "not a JSON object"),
            ("{}".to_owned(), "no `ImageURI`"),
            (format!(r#"{{"ImageURI":"{REPO}:latest"}}"#), "by tag only"),
            (format!(r#"{{"ImageURI":"docker.io/library/nginx@sha256:{HEX}"}}"#), "not an Amazon ECR image"),
            (format!(r#"{{"ImageURI":"{REPO}@sha256:abc"}}"#), "not a digest"),
            (
                format!(r#"{{"ImageURI":"{REPO}@sha256:{HEX}","ImageDigest":"sha256:{}"}}"#, "f".repeat(64)),
                "two digests",
            ),
        ] {
            let e = parse_image_file(file.as_bytes(), "imageDetail.json").unwrap_err();
            assert!(e.contains(needle), "{file}: {e}");
        }
    }
}

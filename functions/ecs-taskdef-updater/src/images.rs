//! The pipeline's image file: `imagedefinitions.json` (`[{"name": ..., "imageUri": ...}]`)
//! or an ECR source's `imageDetail.json` (`{"ImageURI": ...}`, with ContainerName).

use serde_json::Value;

/// The image file is read whole; a larger one is not an image file.
pub const MAX_IMAGE_FILE_BYTES: u64 = 100 * 1024;

/// Which container gets which image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageChange {
    pub container: String,
    pub image: String,
}

/// Parses the image file. `file` names it in errors; `container_name` is required by an
/// imageDetail.json and refused with imagedefinitions.json (which names its containers).
pub fn parse_image_file(bytes: &[u8], file: &str, container_name: Option<&str>) -> Result<Vec<ImageChange>, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("{file} is not JSON ({e}); expected [{{\"name\":\"<container>\",\"imageUri\":\"<image>\"}}] or an imageDetail.json {{\"ImageURI\":\"<image>\"}}"))?;
    match value {
        Value::Array(entries) => {
            if let Some(c) = container_name {
                return Err(format!(
                    "ContainerName `{c}` is only used with an imageDetail.json; {file} names its containers itself"
                ));
            }
            if entries.is_empty() {
                return Err(format!("{file} is an empty list; it must name at least one container and its image"));
            }
            let mut changes: Vec<ImageChange> = Vec::with_capacity(entries.len());
            for (i, entry) in entries.iter().enumerate() {
                let field = |k: &str| entry.get(k).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());
                let container =
                    field("name").ok_or_else(|| format!("entry {i} of {file} has no `name` (the container)"))?;
                let image = field("imageUri")
                    .ok_or_else(|| format!("entry {i} of {file} (container `{container}`) has no `imageUri`"))?;
                if changes.iter().any(|c| c.container == container) {
                    return Err(format!("{file} names container `{container}` twice"));
                }
                changes.push(ImageChange { container: container.to_owned(), image: image.to_owned() });
            }
            Ok(changes)
        }
        Value::Object(detail) => {
            let image =
                detail.get("ImageURI").and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).ok_or_else(
                    || format!("{file} is an object without `ImageURI`; expected an ECR source's imageDetail.json"),
                )?;
            let container = container_name.ok_or_else(|| {
                format!("{file} is an imageDetail.json: set ContainerName to the container whose image changes")
            })?;
            Ok(vec![ImageChange { container: container.to_owned(), image: image.to_owned() }])
        }
        _ => Err(format!("{file} is neither a list of image definitions nor an imageDetail.json object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imagedefinitions_name_containers_and_images() {
        let json = br#"[{"name":"web","imageUri":"111111111111.dkr.ecr.us-east-1.amazonaws.com/web:abc123"},{"name":"sidecar","imageUri":"envoy:1.30"}]"#;
        let changes = parse_image_file(json, "imagedefinitions.json", None).unwrap();
        assert_eq!(
            changes[0],
            ImageChange {
                container: "web".into(),
                image: "111111111111.dkr.ecr.us-east-1.amazonaws.com/web:abc123".into()
            }
        );
        assert_eq!(changes[1].container, "sidecar");
    }

    #[test]
    fn image_detail_needs_the_container_name() {
        let json = br#"{"ImageSizeInBytes":"50801513","ImageDigest":"sha256:ab12","ImageURI":"111111111111.dkr.ecr.us-east-1.amazonaws.com/web@sha256:ab12","ImageTags":["latest"]}"#;
        let changes = parse_image_file(json, "imageDetail.json", Some("web")).unwrap();
        assert_eq!(
            changes,
            vec![ImageChange {
                container: "web".into(),
                image: "111111111111.dkr.ecr.us-east-1.amazonaws.com/web@sha256:ab12".into()
            }]
        );
        let e = parse_image_file(json, "imageDetail.json", None).unwrap_err();
        assert!(e.contains("ContainerName"), "{e}");
    }

    #[test]
    fn malformed_image_files_are_refused_saying_what_is_wrong() {
        for (json, needle) in [
            (&b"not json"[..], "not JSON"),
            (b"[]", "empty list"),
            (br#"[{"name":"web"}]"#, "no `imageUri`"),
            (br#"[{"imageUri":"x"}]"#, "no `name`"),
            (br#"[{"name":"web","imageUri":""}]"#, "no `imageUri`"),
            (br#"[{"name":"web","imageUri":"a"},{"name":"web","imageUri":"b"}]"#, "twice"),
            (br#"{"ImageTags":[]}"#, "without `ImageURI`"),
            (b"42", "neither"),
        ] {
            let e = parse_image_file(json, "imagedefinitions.json", None).unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
        let e =
            parse_image_file(br#"[{"name":"web","imageUri":"a"}]"#, "imagedefinitions.json", Some("web")).unwrap_err();
        assert!(e.contains("only used with an imageDetail.json"), "{e}");
    }
}

//! What the benchmark (`crossdeploy-bench`) measures with besides the functions themselves: the
//! calls moto answered (from its access log), and the API-call floor of a Lambda deployment.

use crate::accounts::{self, EXTERNAL_ID, TARGET_ACCOUNT};
use crate::Result;
use aws_config::SdkConfig;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// One request moto answered, from its access log (`CROSSDEPLOY_MOTO_ACCESS_LOG`).
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// When it arrived (ms since the epoch).
    pub at_ms: f64,
    /// How long moto took to answer it.
    pub took_ms: f64,
    pub service: &'static str,
    pub operation: String,
}

/// The calls in moto's access log that arrived between `from_ms` and `to_ms` (ms since the epoch).
pub fn calls_between(log: &Path, from_ms: f64, to_ms: f64) -> Vec<Call> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|l| {
            let at_ms = l["t_ms"].as_f64()?;
            let (service, operation) = classify(&l);
            Some(Call { at_ms, took_ms: l["took_ms"].as_f64().unwrap_or(0.0), service, operation })
        })
        .filter(|c| c.at_ms >= from_ms && c.at_ms <= to_ms)
        .collect()
}

/// The service and operation of one access-log line.
fn classify(line: &serde_json::Value) -> (&'static str, String) {
    let action = line["action"].as_str().unwrap_or_default();
    let path = line["path"].as_str().unwrap_or_default();
    let method = line["method"].as_str().unwrap_or_default();
    if let Some(op) = action.strip_prefix("DynamoDB_20120810.") {
        let items: Vec<&str> =
            line["items"].as_array().map(|a| a.iter().filter_map(|i| i.as_str()).collect()).unwrap_or_default();
        return match items.is_empty() {
            true => ("DynamoDB", op.to_owned()),
            false => ("DynamoDB", format!("{op} {}", items.join("+"))),
        };
    }
    if let Some((_, op)) = action.split_once("ContainerService").and_then(|(_, rest)| rest.split_once('.')) {
        return ("ECS", op.to_owned());
    }
    match action {
        "AssumeRole" | "GetCallerIdentity" => return ("STS", action.to_owned()),
        "SimulatePrincipalPolicy" | "GetRole" => return ("IAM", action.to_owned()),
        "DescribeAlarms" | "DescribeAlarmHistory" | "PutMetricAlarm" | "SetAlarmState" => {
            return ("CloudWatch", action.to_owned())
        }
        "" => {}
        other => return ("other", other.to_owned()),
    }
    if path.starts_with("/2015-03-31/functions") || path.starts_with("/2017-03-31/tags") {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let op = match (method, &parts[..]) {
            ("PUT", [_, _, _, "code"]) => "UpdateFunctionCode",
            ("GET", [_, _, _, "configuration"]) => "GetFunctionConfiguration",
            ("PUT", [_, _, _, "configuration"]) => "UpdateFunctionConfiguration",
            ("POST", [_, _, _, "versions"]) => "PublishVersion",
            ("GET", [_, _, _, "versions"]) => "ListVersionsByFunction",
            ("GET", [_, _, _, "aliases", _]) => "GetAlias",
            ("PUT", [_, _, _, "aliases", _]) => "UpdateAlias",
            ("POST", [_, _, _, "aliases"]) => "CreateAlias",
            ("GET", [_, _, _]) => "GetFunction",
            _ => "other",
        };
        return ("Lambda", op.to_owned());
    }
    let op = match (method, line["range"].is_string()) {
        ("GET", true) => "GetObject (range)",
        ("GET", false) => "GetObject",
        ("HEAD", _) => "HeadObject",
        ("PUT", _) => "PutObject",
        _ => "other",
    };
    ("S3", op.to_owned())
}

/// Calls per service, over `jobs` jobs.
pub fn per_service(calls: &[Call], jobs: usize) -> BTreeMap<&'static str, f64> {
    let mut counts: BTreeMap<&'static str, f64> = BTreeMap::new();
    for c in calls {
        *counts.entry(c.service).or_default() += 1.0;
    }
    counts.values_mut().for_each(|v| *v /= jobs.max(1) as f64);
    counts
}

/// "DynamoDB 3.0, Lambda 5.0, ..." for a table cell.
pub fn describe(counts: &BTreeMap<&'static str, f64>) -> String {
    counts.iter().map(|(s, n)| format!("{s} {n:.1}")).collect::<Vec<_>>().join(", ")
}

/// The API-call floor of a Lambda deployment in crossdeploy's design: its calls, back to back,
/// from one process with warm connections and the target session assumed once beforehand. No
/// ledger, no Lambda hop, no AssumeRole per job, no permission preflight.
///
/// The calls ([`FLOOR_CALLS`]): GetObject (the artifact), GetAlias (what stands: kept for
/// rollback, and the alias's RevisionId), GetFunctionConfiguration (the function's RevisionId and
/// code), UpdateFunctionCode (guarded by that RevisionId; its answer says the update settled, as
/// moto settles at once), PublishVersion (guarded by the CodeSha256), UpdateAlias (guarded by the
/// alias's RevisionId), PutJobSuccessResult.
pub struct Floor {
    s3: aws_sdk_s3::Client,
    lambda: aws_sdk_lambda::Client,
    codepipeline: aws_sdk_codepipeline::Client,
}

/// The calls [`Floor::deploy`] makes, in order.
pub const FLOOR_CALLS: [&str; 7] = [
    "s3:GetObject",
    "lambda:GetAlias",
    "lambda:GetFunctionConfiguration",
    "lambda:UpdateFunctionCode",
    "lambda:PublishVersion",
    "lambda:UpdateAlias",
    "codepipeline:PutJobSuccessResult",
];

impl Floor {
    /// Clients for the shared services account (`shared`), the emulator at `codepipeline`, and
    /// the target account through one AssumeRole made now.
    pub async fn new(shared: &SdkConfig, codepipeline: &str) -> Result<Floor> {
        let sts = aws_sdk_sts::Client::new(shared);
        let creds = sts
            .assume_role()
            .role_arn(accounts::target_role(TARGET_ACCOUNT))
            .role_session_name("bench-floor")
            .external_id(EXTERNAL_ID)
            .send()
            .await?
            .credentials
            .ok_or("AssumeRole gave no credentials")?;
        let target = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(shared.region().cloned())
            .endpoint_url(shared.endpoint_url().unwrap_or_default())
            .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new(
                    creds.access_key_id(),
                    creds.secret_access_key(),
                    Some(creds.session_token().to_owned()),
                    None,
                    "bench-floor",
                ),
            ))
            .build();
        let s3 =
            aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(shared).force_path_style(true).build());
        let codepipeline = aws_sdk_codepipeline::Client::from_conf(
            aws_sdk_codepipeline::config::Builder::from(shared).endpoint_url(codepipeline).build(),
        );
        Ok(Floor { s3, lambda: aws_sdk_lambda::Client::new(&target), codepipeline })
    }

    /// One deployment of the package at `path` in the artifact `bucket`/`key` to `function`'s
    /// `alias`, answering `job_id`. Returns the version published.
    pub async fn deploy(
        &self,
        (bucket, key, path): (&str, &str, &str),
        function: &str,
        alias: &str,
        job_id: &str,
    ) -> Result<String> {
        let artifact = self.s3.get_object().bucket(bucket).key(key).send().await?.body.collect().await?.into_bytes();
        let mut package = Vec::new();
        zip::ZipArchive::new(std::io::Cursor::new(artifact))?.by_name(path)?.read_to_end(&mut package)?;
        let stands = self.lambda.get_alias().function_name(function).name(alias).send().await?;
        let revision = self
            .lambda
            .get_function_configuration()
            .function_name(function)
            .send()
            .await?
            .revision_id
            .unwrap_or_default();
        let updated = self
            .lambda
            .update_function_code()
            .function_name(function)
            .zip_file(aws_sdk_lambda::primitives::Blob::new(package))
            .revision_id(revision)
            .send()
            .await?;
        let sha = updated.code_sha256.unwrap_or_default();
        let version = self
            .lambda
            .publish_version()
            .function_name(function)
            .code_sha256(sha)
            .send()
            .await?
            .version
            .ok_or("PublishVersion gave no version")?;
        self.lambda
            .update_alias()
            .function_name(function)
            .name(alias)
            .function_version(&version)
            .set_revision_id(stands.revision_id)
            .send()
            .await?;
        self.codepipeline
            .put_job_success_result()
            .job_id(job_id)
            .output_variables("FunctionVersion", &version)
            .send()
            .await?;
        Ok(version)
    }
}

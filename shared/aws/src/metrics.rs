//! CloudWatch metrics in the embedded metric format (EMF): one JSON line on stdout per event,
//! which CloudWatch Logs turns into metrics as it ingests the function's log. No API call, no
//! added latency, nothing to fail.
//!
//! Namespace `crossdeploy`. The metrics, and their dimensions:
//! - `Deployments` (Count) and `DeploymentDuration` (Milliseconds), by `Kind` (Lambda, Ecs) and
//!   `Outcome` (Succeeded, Failed): a deployment's end, from the worker.
//! - `JobsFailed` (Count), by `FailureType` (ConfigurationError, PermissionError, JobFailed):
//!   jobs answered with a failure, from the worker.
//! - `JobsAnsweredLate` (Count): answers CodePipeline refused because the job was no longer
//!   waiting for one (it had timed out, or was answered already), from the worker.
//! - `Rollbacks` (Count), by `Trigger` (StageFailed, Alarm, EcsDeploymentFailed, Direct) and
//!   `Result` (Restored, AlreadyRestored, LeftAlone, HandledBefore, RolledBackByEcs,
//!   NotApplicable, Pending, Failed), from deploy-rollback.

use std::io::Write;

/// The namespace of every crossdeploy metric.
pub const NAMESPACE: &str = "crossdeploy";

/// A CloudWatch unit EMF accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
}

impl Unit {
    fn as_str(&self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// One EMF line: `dimensions` (name, value) and `metrics` (name, value, unit), at `timestamp_ms`.
/// With two dimensions or more, each is also published alone (a rollup), so that an alarm can
/// watch one of them (say, rollbacks whose `Result` is `Failed`, whatever their trigger).
pub fn line(timestamp_ms: u64, dimensions: &[(&str, &str)], metrics: &[(&str, f64, Unit)]) -> String {
    let mut root = serde_json::Map::new();
    let all: Vec<&str> = dimensions.iter().map(|(k, _)| *k).collect();
    let mut names = vec![all.clone()];
    if all.len() > 1 {
        names.extend(all.iter().map(|k| vec![*k]));
    }
    let definitions: Vec<serde_json::Value> =
        metrics.iter().map(|(name, _, unit)| serde_json::json!({"Name": name, "Unit": unit.as_str()})).collect();
    root.insert(
        "_aws".to_owned(),
        serde_json::json!({
            "Timestamp": timestamp_ms,
                        "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": names, "Metrics": definitions}],
        }),
    );
    for (k, v) in dimensions {
        root.insert((*k).to_owned(), serde_json::Value::String((*v).to_owned()));
    }
    for (name, value, _) in metrics {
        root.insert((*name).to_owned(), serde_json::json!(value));
    }
    serde_json::Value::Object(root).to_string()
}

/// Whether this process runs as a Lambda function (the runtime sets `AWS_LAMBDA_FUNCTION_NAME`),
/// whose stdout goes to CloudWatch Logs. Elsewhere (the command line, in-process tests) stdout
/// is someone's answer channel, and no metric is written.
fn in_lambda() -> bool {
    static IN_LAMBDA: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *IN_LAMBDA.get_or_init(|| std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some_and(|v| !v.is_empty()))
}

/// Writes one EMF line to stdout, where Lambda sends it to CloudWatch Logs; nothing outside Lambda.
pub fn emit(dimensions: &[(&str, &str)], metrics: &[(&str, f64, Unit)]) {
    if !in_lambda() {
        return;
    }
    let text = line(crate::now_epoch_millis(), dimensions, metrics);
    let mut out = std::io::stdout().lock();
    // A metric lost to a closed stdout is not worth failing a deployment for.
    let _ = writeln!(out, "{text}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_the_embedded_metric_format() {
        let text = line(
            1_764_658_277_000,
            &[("Kind", "Lambda"), ("Outcome", "Succeeded")],
            &[("Deployments", 1.0, Unit::Count), ("DeploymentDuration", 4200.0, Unit::Milliseconds)],
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["_aws"]["Timestamp"], 1_764_658_277_000u64);
        let m = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(m["Namespace"], "crossdeploy");
        assert_eq!(m["Dimensions"], serde_json::json!([["Kind", "Outcome"], ["Kind"], ["Outcome"]]));
        assert_eq!(m["Metrics"][1], serde_json::json!({"Name": "DeploymentDuration", "Unit": "Milliseconds"}));
        assert_eq!(
            (v["Kind"].as_str(), v["Deployments"].as_f64(), v["DeploymentDuration"].as_f64()),
            (Some("Lambda"), Some(1.0), Some(4200.0))
        );
        assert!(!text.contains('\n'), "one line");
    }
}

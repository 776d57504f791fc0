//! What woke the worker.

use crossdeploy_pipeline_job::actions::PROVIDERS;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// The `CodePipeline.job` event of an Invoke action.
    InvokeJob,
    /// A crossdeploy custom action STARTED (EventBridge): poll for its jobs.
    ActionStarted { provider: String },
    /// The schedule: poll every crossdeploy action type (a safety net, and continuation jobs).
    Schedule,
    /// Anything else, e.g. another provider's action: left alone.
    Ignored { why: String },
}

/// Reads the kind of event without keeping any of it.
pub fn classify(event: &Value) -> Trigger {
    if event.get("CodePipeline.job").is_some() {
        return Trigger::InvokeJob;
    }
    let source = event["source"].as_str().unwrap_or_default();
    let detail_type = event["detail-type"].as_str().unwrap_or_default();
    match (source, detail_type) {
        ("aws.events", "Scheduled Event") => Trigger::Schedule,
        ("aws.codepipeline", "CodePipeline Action Execution State Change") => {
            let detail = &event["detail"];
            let kind = &detail["type"];
            let provider = kind["provider"].as_str().unwrap_or_default();
            if detail["state"] != "STARTED" {
                Trigger::Ignored { why: format!("action state {}", detail["state"]) }
            } else if kind["owner"] != "Custom" || !PROVIDERS.contains(&provider) {
                Trigger::Ignored { why: format!("not a crossdeploy action: {} {provider}", kind["owner"]) }
            } else {
                Trigger::ActionStarted { provider: provider.to_owned() }
            }
        }
        _ => Trigger::Ignored { why: format!("an event of source `{source}`, type `{detail_type}`") },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn started(owner: &str, provider: &str, state: &str) -> Value {
        json!({
            "version": "0", "id": "e1", "detail-type": "CodePipeline Action Execution State Change", "source": "aws.codepipeline",
            "account": "111111111111", "region": "us-east-1",
            "detail": {"pipeline": "orders", "execution-id": "x", "stage": "Deploy-dev", "action": "Lambda", "state": state,
                       "type": {"owner": owner, "category": "Deploy", "provider": provider, "version": "1"}}
        })
    }

    #[test]
    fn events_are_told_apart() {
        assert_eq!(classify(&json!({"CodePipeline.job": {"id": "j"}})), Trigger::InvokeJob);
        assert_eq!(
            classify(&json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}})),
            Trigger::Schedule
        );
        assert_eq!(
            classify(&started("Custom", "CrossdeployEcs", "STARTED")),
            Trigger::ActionStarted { provider: "CrossdeployEcs".into() }
        );
        assert!(matches!(classify(&started("Custom", "SomeoneElse", "STARTED")), Trigger::Ignored { .. }));
        assert!(matches!(classify(&started("AWS", "CrossdeployLambda", "STARTED")), Trigger::Ignored { .. }));
        assert!(matches!(classify(&started("Custom", "CrossdeployLambda", "FAILED")), Trigger::Ignored { .. }));
        assert!(matches!(classify(&json!({"hello": "world"})), Trigger::Ignored { .. }));
    }
}

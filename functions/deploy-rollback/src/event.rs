//! What woke the rollback function: an EventBridge event (a pipeline action that failed, an
//! alarm that went to ALARM, an ECS deployment that failed) or a direct request. Events are
//! read into only the fields rollback needs; nothing else of them is kept or logged.

use crossdeploy_ledger::TargetKey;
use crossdeploy_protocol::RoleArn;
use serde::Deserialize;

/// Why the function runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// An action failed in a stage of a pipeline execution: the stage's deployments are condemned.
    ActionFailed {
        event_id: String,
        pipeline: String,
        execution_id: String,
        stage: String,
        action: String,
        time_ms: u64,
    },
    /// An alarm in a target account went to ALARM: the deployments it guards, in their bake window.
    Alarm { event_id: String, account: String, region: String, alarm: String, reason: String, time_ms: u64 },
    /// ECS's circuit breaker failed a deployment (and rolled the service back itself).
    EcsDeploymentFailed {
        event_id: String,
        account: String,
        region: String,
        cluster: String,
        service: String,
        deployment_id: String,
        reason: String,
        time_ms: u64,
    },
    /// Someone asked: roll back the latest deployment of this target (to `restore`, if given).
    /// `sent_by`: who signed it, as Lambda established it for a request to the function URL
    /// (IAM auth); `None` for a plain Invoke, which does not say.
    Direct { request_id: String, target: TargetKey, restore: Option<String>, reason: String, sent_by: Option<String> },
    /// An event of a kind the rules deliver but that condemns nothing (say, an alarm back to OK).
    Ignored(String),
}

impl Trigger {
    /// The kind of trigger, as the `Rollbacks` metric's `Trigger` dimension names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Trigger::ActionFailed { .. } => "StageFailed",
            Trigger::Alarm { .. } => "Alarm",
            Trigger::EcsDeploymentFailed { .. } => "EcsDeploymentFailed",
            Trigger::Direct { .. } => "Direct",
            Trigger::Ignored(_) => "Ignored",
        }
    }

    /// One line saying what happened, for the logs and the ledger.
    pub fn describe(&self) -> String {
        match self {
            Trigger::ActionFailed { pipeline, execution_id, stage, action, .. } => {
                format!("action {action} failed in stage {stage} of pipeline {pipeline} execution {execution_id}")
            }
            Trigger::Alarm { account, region, alarm, .. } => {
                format!("alarm {alarm} went to ALARM in account {account} ({region})")
            }
            Trigger::EcsDeploymentFailed { account, cluster, service, deployment_id, reason, .. } => format!(
                "ECS deployment {deployment_id} of service {service} in cluster {cluster} of account {account} failed: {reason}"
            ),
            Trigger::Direct { target, reason, .. } => format!("rollback of {target} requested: {reason}"),
            Trigger::Ignored(why) => why.clone(),
        }
    }

    /// The event's id (or the request's): what the ledger records as the rollback's cause.
    pub fn event_id(&self) -> &str {
        match self {
            Trigger::ActionFailed { event_id, .. }
            | Trigger::Alarm { event_id, .. }
            | Trigger::EcsDeploymentFailed { event_id, .. } => event_id,
            Trigger::Direct { request_id, .. } => request_id,
            Trigger::Ignored(_) => "",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("deploy-rollback cannot read its event: {0}")]
pub struct BadEvent(pub String);

/// The EventBridge envelope.
#[derive(Deserialize)]
struct Envelope {
    id: String,
    #[serde(rename = "detail-type")]
    detail_type: String,
    source: String,
    account: String,
    time: String,
    region: String,
    #[serde(default)]
    resources: Vec<String>,
    detail: serde_json::Value,
}

#[derive(Deserialize)]
struct ActionDetail {
    pipeline: String,
    #[serde(rename = "execution-id")]
    execution_id: String,
    stage: String,
    action: String,
    state: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AlarmDetail {
    alarm_name: String,
    state: AlarmState,
}

#[derive(Deserialize)]
struct AlarmState {
    value: String,
    #[serde(default)]
    reason: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EcsDetail {
    event_name: String,
    #[serde(default)]
    deployment_id: String,
    #[serde(default)]
    reason: String,
}

/// A direct request: `{"Kind": "Lambda", "TargetRoleArn", "FunctionName", "Alias", "Region"?,
/// "RestoreVersion"?, "Reason"?}` or `{"Kind": "Ecs", "TargetRoleArn", "ClusterName",
/// "ServiceName", "Region"?, "RestoreTaskDefinition"?, "Reason"?}`.
#[derive(Deserialize)]
#[serde(tag = "Kind")]
enum Direct {
    Lambda(DirectLambda),
    Ecs(DirectEcs),
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct DirectLambda {
    target_role_arn: RoleArn,
    function_name: String,
    alias: String,
    region: Option<String>,
    restore_version: Option<String>,
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct DirectEcs {
    target_role_arn: RoleArn,
    cluster_name: String,
    service_name: String,
    region: Option<String>,
    restore_task_definition: Option<String>,
    reason: Option<String>,
}

/// Milliseconds since the epoch of an RFC 3339 time (EventBridge's `time`).
pub fn parse_time(time: &str) -> Option<u64> {
    let t = aws_smithy_types::DateTime::from_str(time, aws_smithy_types::date_time::Format::DateTime).ok()?;
    u64::try_from(t.to_millis().ok()?).ok()
}

/// Reads the event. `region` is where the function runs (a direct request's default region).
pub fn read_event(event: &serde_json::Value, region: &str, request_id: &str) -> Result<Trigger, BadEvent> {
    if event.get("detail-type").is_some() {
        let envelope: Envelope =
            serde_json::from_value(event.clone()).map_err(|e| BadEvent(format!("not an EventBridge event: {e}")))?;
        return read_envelope(envelope);
    }
    if event.get("requestContext").is_some() {
        return read_function_url(event, region, request_id);
    }
    if event.get("Kind").is_some() {
        return read_direct(event, region, request_id, None);
    }
    Err(BadEvent(
        "neither an EventBridge event (no detail-type) nor a direct request (no Kind: Lambda or Ecs)".to_owned(),
    ))
}

fn read_envelope(e: Envelope) -> Result<Trigger, BadEvent> {
    let time_ms =
        parse_time(&e.time).ok_or_else(|| BadEvent(format!("event {}: time {:?} is not RFC 3339", e.id, e.time)))?;
    let detail = |what: &str| BadEvent(format!("event {} ({}): the detail is not {what}", e.id, e.detail_type));
    match (e.source.as_str(), e.detail_type.as_str()) {
        ("aws.codepipeline", "CodePipeline Action Execution State Change") => {
            let d: ActionDetail = serde_json::from_value(e.detail.clone())
                .map_err(|x| BadEvent(format!("{}: {x}", detail("an action state change"))))?;
            if d.state != "FAILED" {
                return Ok(Trigger::Ignored(format!("action {} is {}, not FAILED", d.action, d.state)));
            }
            Ok(Trigger::ActionFailed {
                event_id: e.id,
                pipeline: d.pipeline,
                execution_id: d.execution_id,
                stage: d.stage,
                action: d.action,
                time_ms,
            })
        }
        ("aws.cloudwatch", "CloudWatch Alarm State Change") => {
            let d: AlarmDetail = serde_json::from_value(e.detail.clone())
                .map_err(|x| BadEvent(format!("{}: {x}", detail("an alarm state change"))))?;
            if d.state.value != "ALARM" {
                return Ok(Trigger::Ignored(format!("alarm {} went to {}, not ALARM", d.alarm_name, d.state.value)));
            }
            Ok(Trigger::Alarm {
                event_id: e.id,
                account: e.account,
                region: e.region,
                alarm: d.alarm_name,
                reason: d.state.reason,
                time_ms,
            })
        }
        ("aws.ecs", "ECS Deployment State Change") => {
            let d: EcsDetail = serde_json::from_value(e.detail.clone())
                .map_err(|x| BadEvent(format!("{}: {x}", detail("a deployment state change"))))?;
            if d.event_name != "SERVICE_DEPLOYMENT_FAILED" {
                return Ok(Trigger::Ignored(format!("ECS deployment {} is {}", d.deployment_id, d.event_name)));
            }
            // arn:aws:ecs:<region>:<account>:service/<cluster>/<service>
            let arn =
                e.resources.first().ok_or_else(|| BadEvent(format!("event {}: no service ARN in resources", e.id)))?;
            let (cluster, service) = arn
                .split_once(":service/")
                .and_then(|(_, path)| path.split_once('/'))
                .filter(|(c, s)| !c.is_empty() && !s.is_empty() && !s.contains('/'))
                .ok_or_else(|| {
                    BadEvent(format!(
                        "event {}: service ARN {arn} does not name its cluster (the long ARN format, service/<cluster>/<service>, is needed)",
                        e.id
                    ))
                })?;
            Ok(Trigger::EcsDeploymentFailed {
                event_id: e.id,
                account: e.account,
                region: e.region,
                cluster: cluster.to_owned(),
                service: service.to_owned(),
                deployment_id: d.deployment_id,
                reason: d.reason,
                time_ms,
            })
        }
        (source, kind) => {
            Ok(Trigger::Ignored(format!("event {} from {source} ({kind}) is not one deploy-rollback handles", e.id)))
        }
    }
}

/// A direct request through the function URL: a POST whose body is the request, signed (IAM
/// auth) by the principal Lambda names in the request context.
fn read_function_url(event: &serde_json::Value, region: &str, request_id: &str) -> Result<Trigger, BadEvent> {
    use aws_lambda_events::event::lambda_function_urls::LambdaFunctionUrlRequest;
    use base64::Engine as _;
    let request: LambdaFunctionUrlRequest =
        serde_json::from_value(event.clone()).map_err(|e| BadEvent(format!("not a function URL request: {e}")))?;
    let method = request.request_context.http.method.as_deref().unwrap_or_default();
    if method != "POST" {
        return Err(BadEvent(format!("the function URL takes a direct request as the body of a POST, not a {method}")));
    }
    let body = request.body.filter(|b| !b.trim().is_empty()).ok_or_else(|| {
        BadEvent("the POST has no body: send the direct request (JSON, with Kind) as its body".to_owned())
    })?;
    let body = if request.is_base64_encoded {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .map_err(|e| BadEvent(format!("the POST's body is marked base64 but is not: {e}")))?;
        String::from_utf8(bytes).map_err(|_| BadEvent("the POST's body is not UTF-8 text".to_owned()))?
    } else {
        body
    };
    let direct: serde_json::Value = serde_json::from_str(&body)
        .map_err(|e| BadEvent(format!("the POST's body is not JSON ({e}): send the direct request, with Kind")))?;
    if direct.get("Kind").is_none() {
        return Err(BadEvent("the function URL takes direct requests only (JSON with Kind: Lambda or Ecs)".to_owned()));
    }
    let sent_by = request.request_context.authorizer.and_then(|a| a.iam).and_then(|iam| iam.user_arn);
    read_direct(&direct, region, request_id, sent_by)
}

fn read_direct(
    event: &serde_json::Value,
    region: &str,
    request_id: &str,
    sent_by: Option<String>,
) -> Result<Trigger, BadEvent> {
    let direct: Direct =
        serde_json::from_value(event.clone()).map_err(|e| BadEvent(format!("not a valid direct request: {e}")))?;
    let nonempty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    let (target, restore, reason) = match direct {
        Direct::Lambda(d) => {
            if d.function_name.trim().is_empty() || d.alias.trim().is_empty() {
                return Err(BadEvent("FunctionName and Alias must not be empty".to_owned()));
            }
            let region = d.region.unwrap_or_else(|| region.to_owned());
            let target = TargetKey::lambda(d.target_role_arn.account_id(), &region, &d.function_name, &d.alias);
            (target, nonempty(d.restore_version), d.reason)
        }
        Direct::Ecs(d) => {
            if d.cluster_name.trim().is_empty() || d.service_name.trim().is_empty() {
                return Err(BadEvent("ClusterName and ServiceName must not be empty".to_owned()));
            }
            let region = d.region.unwrap_or_else(|| region.to_owned());
            let target = TargetKey::ecs(d.target_role_arn.account_id(), &region, &d.cluster_name, &d.service_name);
            (target, nonempty(d.restore_task_definition), d.reason)
        }
    };
    Ok(Trigger::Direct {
        request_id: request_id.to_owned(),
        target,
        restore,
        reason: nonempty(reason).unwrap_or_else(|| "direct request".to_owned()),
        sent_by,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture(name: &str) -> serde_json::Value {
        let path = format!("{}/tests/events/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    #[test]
    fn the_action_failed_event_names_pipeline_execution_and_stage() {
        let t = read_event(&fixture("codepipeline-action-failed.json"), "us-east-1", "r").unwrap();
        let Trigger::ActionFailed { pipeline, execution_id, stage, action, event_id, time_ms } = t else {
            panic!("expected ActionFailed")
        };
        assert_eq!(
            (pipeline.as_str(), execution_id.as_str(), stage.as_str(), action.as_str()),
            ("orders", "12345678-1234-5678-abcd-12345678abcd", "Deploy-dev", "IntegrationTests")
        );
        assert_eq!(event_id, "01234567-0123-0123-0123-012345678901");
        assert_eq!(time_ms, parse_time("2026-11-26T08:30:00Z").unwrap());
    }

    #[test]
    fn other_action_states_condemn_nothing() {
        let mut e = fixture("codepipeline-action-failed.json");
        e["detail"]["state"] = json!("SUCCEEDED");
        assert!(matches!(read_event(&e, "us-east-1", "r").unwrap(), Trigger::Ignored(_)));
    }

    #[test]
    fn the_alarm_event_names_account_region_and_alarm() {
        let t = read_event(&fixture("cloudwatch-alarm-state-change.json"), "us-east-1", "r").unwrap();
        let Trigger::Alarm { account, region, alarm, reason, .. } = t else { panic!("expected Alarm") };
        assert_eq!((account.as_str(), region.as_str(), alarm.as_str()), ("222222222222", "us-east-1", "orders-5xx"));
        assert!(reason.contains("Threshold Crossed"), "{reason}");
        let mut ok = fixture("cloudwatch-alarm-state-change.json");
        ok["detail"]["state"]["value"] = json!("OK");
        assert!(matches!(read_event(&ok, "us-east-1", "r").unwrap(), Trigger::Ignored(_)));
    }

    #[test]
    fn the_ecs_event_names_cluster_service_and_deployment() {
        let t = read_event(&fixture("ecs-deployment-failed.json"), "us-east-1", "r").unwrap();
        let Trigger::EcsDeploymentFailed { cluster, service, deployment_id, reason, account, .. } = t else {
            panic!("expected EcsDeploymentFailed")
        };
        assert_eq!((cluster.as_str(), service.as_str()), ("apps", "web"));
        assert_eq!(deployment_id, "ecs-svc/1234567890123456789");
        assert_eq!(account, "222222222222");
        assert!(reason.contains("circuit breaker"), "{reason}");
        let mut short = fixture("ecs-deployment-failed.json");
        short["resources"] = json!(["arn:aws:ecs:us-east-1:222222222222:service/web"]);
        let e = read_event(&short, "us-east-1", "r").unwrap_err();
        assert!(e.to_string().contains("does not name its cluster"), "{e}");
        let mut progress = fixture("ecs-deployment-failed.json");
        progress["detail"]["eventName"] = json!("SERVICE_DEPLOYMENT_IN_PROGRESS");
        assert!(matches!(read_event(&progress, "us-east-1", "r").unwrap(), Trigger::Ignored(_)));
    }

    #[test]
    fn direct_requests_name_a_target() {
        let t = read_event(
            &json!({"Kind": "Lambda", "TargetRoleArn": "arn:aws:iam::222222222222:role/crossdeploy-target",
                    "FunctionName": "orders", "Alias": "live", "RestoreVersion": "3", "Reason": "bad release"}),
            "eu-west-1",
            "req-1",
        )
        .unwrap();
        assert_eq!(
            t,
            Trigger::Direct {
                request_id: "req-1".into(),
                target: TargetKey::lambda("222222222222", "eu-west-1", "orders", "live"),
                restore: Some("3".into()),
                reason: "bad release".into(),
                sent_by: None,
            }
        );
        let t = read_event(
            &json!({"Kind": "Ecs", "TargetRoleArn": "arn:aws:iam::222222222222:role/crossdeploy-target",
                    "ClusterName": "apps", "ServiceName": "web", "Region": "us-east-1"}),
            "eu-west-1",
            "req-2",
        )
        .unwrap();
        assert!(
            matches!(t, Trigger::Direct { target, restore: None, .. } if target == TargetKey::ecs("222222222222", "us-east-1", "apps", "web"))
        );
    }

    #[test]
    fn a_direct_request_through_the_function_url_names_who_signed_it() {
        let event = fixture("function-url-direct.json");
        let t = read_event(&event, "eu-west-1", "req-3").unwrap();
        assert_eq!(
            t,
            Trigger::Direct {
                request_id: "req-3".into(),
                target: TargetKey::lambda("222222222222", "eu-west-1", "orders", "live"),
                restore: None,
                reason: "bad release".into(),
                sent_by: Some("arn:aws:sts::111111111111:assumed-role/OnCall/bob".into()),
            }
        );
        // The same body, base64-encoded (as Lambda hands over a body it does not take for text).
        let mut encoded = event.clone();
        use base64::Engine as _;
        encoded["body"] = json!(base64::engine::general_purpose::STANDARD.encode(event["body"].as_str().unwrap()));
        encoded["isBase64Encoded"] = json!(true);
        assert_eq!(read_event(&encoded, "eu-west-1", "req-3").unwrap(), t);
        // A URL with no IAM auth names nobody.
        let mut anonymous = event.clone();
        anonymous["requestContext"].as_object_mut().unwrap().remove("authorizer");
        assert!(matches!(read_event(&anonymous, "eu-west-1", "r").unwrap(), Trigger::Direct { sent_by: None, .. }));
        let bad = |change: fn(&mut serde_json::Value)| {
            let mut e = event.clone();
            change(&mut e);
            read_event(&e, "eu-west-1", "r").unwrap_err().to_string()
        };
        assert!(bad(|e| e["requestContext"]["http"]["method"] = json!("GET")).contains("not a GET"));
        assert!(bad(|e| e["body"] = json!(null)).contains("has no body"));
        assert!(bad(|e| e["body"] = json!("{nope")).contains("not JSON"));
        assert!(
            bad(|e| e["isBase64Encoded"] = json!(true)).contains("not base64")
                || bad(|e| e["isBase64Encoded"] = json!(true)).contains("is marked base64")
        );
        assert!(bad(|e| e["body"] = json!(r#"{"detail-type": "x"}"#)).contains("direct requests only"));
        assert!(bad(|e| e["body"] = json!(r#"{"Kind": "Lambda"}"#)).contains("not a valid direct request"));
    }

    #[test]
    fn bad_input_gets_a_clear_error() {
        for (event, needle) in [
            (json!({"hello": "world"}), "neither an EventBridge event"),
            (json!({"Kind": "S3", "TargetRoleArn": "arn:aws:iam::222222222222:role/x"}), "not a valid direct request"),
            (
                json!({"Kind": "Lambda", "TargetRoleArn": "arn:aws:iam::2222:role/x", "FunctionName": "f", "Alias": "a"}),
                "not a valid direct request",
            ),
            (
                json!({"Kind": "Lambda", "TargetRoleArn": "arn:aws:iam::222222222222:role/x", "FunctionName": "f", "Alias": "a", "Versoin": "3"}),
                "unknown field",
            ),
            (
                json!({"Kind": "Lambda", "TargetRoleArn": "arn:aws:iam::222222222222:role/x", "FunctionName": " ", "Alias": "a"}),
                "must not be empty",
            ),
            (
                json!({"detail-type": "CloudWatch Alarm State Change", "source": "aws.cloudwatch"}),
                "not an EventBridge event",
            ),
        ] {
            let e = read_event(&event, "us-east-1", "r").unwrap_err().to_string();
            assert!(e.contains(needle), "{e} should contain {needle}");
        }
        let mut late = fixture("cloudwatch-alarm-state-change.json");
        late["time"] = json!("yesterday");
        assert!(read_event(&late, "us-east-1", "r").unwrap_err().to_string().contains("not RFC 3339"));
    }
}

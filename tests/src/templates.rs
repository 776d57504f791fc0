//! The project's CloudFormation templates, read as JSON (through the venv's PyYAML, which keeps
//! intrinsic functions as `{"Fn::Sub": ...}` objects).

use crate::{venv_bin, workspace_root, Result};
use aws_sdk_codepipeline::types::{
    ActionCategory, ActionConfigurationProperty, ActionConfigurationPropertyType, ActionTypeSettings, ArtifactDetails,
};
use serde_json::Value;
use std::process::Command;

/// A template of the workspace (`template.yaml`, `infra/...`) as JSON.
pub fn template(relative: &str) -> Result<Value> {
    let out = Command::new(venv_bin("python")?)
        .arg(workspace_root().join("tests/localaws/cfn_to_json.py"))
        .arg(workspace_root().join(relative))
        .output()?;
    if !out.status.success() {
        return Err(format!("{relative} could not be read: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The resources of a type, by logical id.
pub fn resources<'a>(template: &'a Value, kind: &str) -> Vec<(&'a String, &'a Value)> {
    template["Resources"].as_object().map(|r| r.iter().filter(|(_, v)| v["Type"] == kind).collect()).unwrap_or_default()
}

/// A string property, with `Fn::Sub`'s `${AWS::Region}` resolved.
fn text(v: &Value, region: &str) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("Fn::Sub").and_then(Value::as_str).map(|s| s.replace("${AWS::Region}", region)),
        _ => None,
    }
}

/// Creates, through the CodePipeline API, every custom action type `template.yaml` declares.
/// Returns their providers.
pub async fn create_custom_action_types(client: &aws_sdk_codepipeline::Client, region: &str) -> Result<Vec<String>> {
    let t = template("template.yaml")?;
    let mut providers = Vec::new();
    for (_, resource) in resources(&t, "AWS::CodePipeline::CustomActionType") {
        let p = &resource["Properties"];
        let count = |d: &Value| {
            ArtifactDetails::builder()
                .minimum_count(d["MinimumCount"].as_i64().unwrap_or(0) as i32)
                .maximum_count(d["MaximumCount"].as_i64().unwrap_or(0) as i32)
                .build()
        };
        let mut call = client
            .create_custom_action_type()
            .category(ActionCategory::from(p["Category"].as_str().unwrap_or_default()))
            .provider(p["Provider"].as_str().unwrap_or_default())
            .version(p["Version"].as_str().unwrap_or_default())
            .settings(
                ActionTypeSettings::builder()
                    .set_entity_url_template(text(&p["Settings"]["EntityUrlTemplate"], region))
                    .set_execution_url_template(text(&p["Settings"]["ExecutionUrlTemplate"], region))
                    .build(),
            )
            .input_artifact_details(count(&p["InputArtifactDetails"]))
            .output_artifact_details(count(&p["OutputArtifactDetails"]));
        for prop in p["ConfigurationProperties"].as_array().into_iter().flatten() {
            call = call.configuration_properties(
                ActionConfigurationProperty::builder()
                    .name(prop["Name"].as_str().unwrap_or_default())
                    .required(prop["Required"].as_bool().unwrap_or(false))
                    .key(prop["Key"].as_bool().unwrap_or(false))
                    .secret(prop["Secret"].as_bool().unwrap_or(false))
                    .queryable(prop["Queryable"].as_bool().unwrap_or(false))
                    .set_description(prop["Description"].as_str().map(str::to_owned))
                    .set_type(prop["Type"].as_str().map(ActionConfigurationPropertyType::from))
                    .build()?,
            );
        }
        call.send().await?;
        providers.push(p["Provider"].as_str().unwrap_or_default().to_owned());
    }
    Ok(providers)
}

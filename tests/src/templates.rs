//! The project's CloudFormation templates, read as JSON (through the venv's PyYAML, which keeps
//! intrinsic functions as `{"Fn::Sub": ...}` objects).

use crate::{infra_venv_bin, venv_bin, workspace_root, Result};
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

/// `template.yaml` as CloudFormation deploys it: translated by aws-sam-translator (the SAM
/// transform), with every function's code at `code_s3_uri` (what `sam package` does).
pub fn sam_translated(code_s3_uri: &str) -> Result<Value> {
    let out = Command::new(infra_venv_bin("python")?)
        .arg(workspace_root().join("tests/localaws/sam_translate.py"))
        .arg(workspace_root().join("template.yaml"))
        .arg(code_s3_uri)
        .env("AWS_DEFAULT_REGION", crate::accounts::REGION)
        .output()?;
    if !out.status.success() {
        return Err(format!("template.yaml could not be translated: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    for note in String::from_utf8_lossy(&out.stderr).lines() {
        println!("{note}");
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Every template as CloudFormation sees it: template.yaml translated, then infra/*.yaml.
pub fn all_templates() -> Result<Vec<(String, Value)>> {
    let mut all = vec![("template.yaml".to_owned(), sam_translated("s3://code/bootstrap.zip")?)];
    let mut infra: Vec<_> = std::fs::read_dir(workspace_root().join("infra"))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    infra.sort();
    for path in infra {
        let name = format!("infra/{}", path.file_name().unwrap_or_default().to_string_lossy());
        all.push((name.clone(), template(&name)?));
    }
    Ok(all)
}

/// Actions that take no resource ARN (the AWS Service Authorization Reference lists no resource
/// type for them), or whose results depend on `*`: the only ones an Allow may grant on `*`.
pub const NO_RESOURCE_SCOPING: &[(&str, &str)] = &[
    ("codepipeline:AcknowledgeJob", "no resource type"),
    ("codepipeline:GetJobDetails", "no resource type"),
    ("codepipeline:PutJobSuccessResult", "no resource type"),
    ("codepipeline:PutJobFailureResult", "no resource type"),
    ("ecs:RegisterTaskDefinition", "no resource type"),
    ("ecs:DescribeTaskDefinition", "no resource type"),
    ("ecs:ListTaskDefinitions", "no resource type"),
    ("ecr:GetAuthorizationToken", "no resource type"),
    ("cloudwatch:DescribeAlarms", "composite alarms are returned only when it is allowed on *"),
];

fn as_list(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(a) => a.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

/// Every policy statement in a template: (where, statement, whether `Resource: "*"` there means
/// the resource itself, as in a KMS key policy).
pub fn policy_statements(template: &Value) -> Vec<(String, &Value, bool)> {
    let mut found = Vec::new();
    let Some(resources) = template["Resources"].as_object() else { return found };
    for (id, r) in resources {
        let p = &r["Properties"];
        let docs: Vec<(String, &Value, bool)> = match r["Type"].as_str().unwrap_or_default() {
            "AWS::IAM::Role" => {
                let mut d = vec![(format!("{id} trust policy"), &p["AssumeRolePolicyDocument"], false)];
                for (i, pol) in as_list(&p["Policies"]).into_iter().enumerate() {
                    d.push((format!("{id} policy {i}"), &pol["PolicyDocument"], false));
                }
                d
            }
            "AWS::IAM::Policy" | "AWS::IAM::ManagedPolicy" => vec![(id.clone(), &p["PolicyDocument"], false)],
            "AWS::KMS::Key" => vec![(format!("{id} key policy"), &p["KeyPolicy"], true)],
            "AWS::S3::BucketPolicy" | "AWS::SQS::QueuePolicy" => vec![(id.clone(), &p["PolicyDocument"], true)],
            "AWS::ECR::Repository" => vec![(format!("{id} repository policy"), &p["RepositoryPolicyText"], true)],
            "AWS::Events::EventBusPolicy" => {
                found.push((id.clone(), &p["Statement"], true));
                Vec::new()
            }
            _ => Vec::new(),
        };
        for (place, doc, own) in docs {
            for st in as_list(&doc["Statement"]) {
                found.push((place.clone(), st, own));
            }
        }
    }
    found
}

/// What breaks least privilege in a template's Allow statements: an action `*` or `service:*`,
/// NotAction, or `Resource: "*"` with an action that could be scoped.
pub fn least_privilege_violations(name: &str, template: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    for (place, st, own_resource) in policy_statements(template) {
        if st["Effect"] != "Allow" {
            continue; // Deny statements only take away
        }
        let sid = st["Sid"].as_str().unwrap_or("(no Sid)");
        if !st["NotAction"].is_null() || !st["NotResource"].is_null() {
            bad.push(format!("{name}: {place} {sid}: an Allow with NotAction/NotResource grants too much"));
        }
        let actions: Vec<&str> = as_list(&st["Action"]).into_iter().filter_map(Value::as_str).collect();
        for a in &actions {
            let broad = *a == "*" || a.split_once(':').is_some_and(|(_, op)| op == "*");
            if broad {
                bad.push(format!("{name}: {place} {sid}: action {a}"));
            }
        }
        let star = as_list(&st["Resource"]).iter().any(|r| r.as_str() == Some("*"));
        if star && !own_resource {
            for a in actions.iter().filter(|a| !NO_RESOURCE_SCOPING.iter().any(|(x, _)| x == *a)) {
                bad.push(format!("{name}: {place} {sid}: {a} on Resource \"*\", but it can be scoped"));
            }
        }
    }
    bad
}

/// Resource types moto 5.2.5's CloudFormation does not create (it skips them with only a
/// warning in its log), and why each is fine to leave out of the local deployment.
pub const MOTO_UNSUPPORTED: &[(&str, &str)] = &[
    (
        "AWS::CodePipeline::CustomActionType",
        "moto has no CodePipeline job API; the tests create the action types in the emulator",
    ),
    ("AWS::CodePipeline::Pipeline", "moto has no CodePipeline job API"),
    ("AWS::CodeBuild::Project", "moto's CloudFormation has no CodeBuild"),
    ("AWS::Events::EventBusPolicy", "not implemented in moto's CloudFormation"),
    ("AWS::Lambda::EventInvokeConfig", "not implemented in moto's CloudFormation"),
    ("AWS::Lambda::Url", "not implemented in moto's CloudFormation"),
    ("AWS::SQS::QueuePolicy", "not implemented in moto's CloudFormation"),
    ("AWS::CloudWatch::Alarm", "not implemented in moto's CloudFormation (the tests check the template's alarms)"),
    (
        "AWS::S3::BucketPolicy",
        "not implemented in moto's CloudFormation (and moto applies Deny statements to every caller)",
    ),
];

/// The template without moto's unsupported resource types; a reference to a removed resource
/// becomes a placeholder. Each removal is returned as a note, to be printed.
pub fn without_unsupported(template: &Value) -> (Value, Vec<String>) {
    let mut t = template.clone();
    let mut notes = Vec::new();
    let mut gone = Vec::new();
    if let Some(resources) = t["Resources"].as_object_mut() {
        resources.retain(|id, r| {
            let kind = r["Type"].as_str().unwrap_or_default();
            match MOTO_UNSUPPORTED.iter().find(|(k, _)| *k == kind) {
                Some((_, why)) => {
                    notes.push(format!("note: removed {id} ({kind}) for moto: {why}"));
                    gone.push(id.clone());
                    false
                }
                None => true,
            }
        });
    }
    fn replace(v: &mut Value, gone: &[String], notes: &mut Vec<String>) {
        let placeholder = match &*v {
            Value::Object(o) => match (o.get("Ref").and_then(Value::as_str), o.get("Fn::GetAtt")) {
                (Some(r), _) if gone.iter().any(|g| g == r) => Some(format!("removed-{r}")),
                (_, Some(Value::Array(a)))
                    if a.first().and_then(Value::as_str).is_some_and(|r| gone.iter().any(|g| g == r)) =>
                {
                    Some(format!("arn:aws:removed:us-east-1:000000000000:{}", a[0].as_str().unwrap_or_default()))
                }
                _ => None,
            },
            _ => None,
        };
        if let Some(p) = placeholder {
            notes.push(format!("note: a reference to a removed resource became {p}"));
            *v = Value::String(p);
            return;
        }
        match v {
            Value::Object(o) => o.values_mut().for_each(|x| replace(x, gone, notes)),
            Value::Array(a) => a.iter_mut().for_each(|x| replace(x, gone, notes)),
            _ => {}
        }
    }
    replace(&mut t, &gone, &mut notes);
    (t, notes)
}

/// Creates a stack in the local AWS as `account` (through the venv's AWS CLI) and waits, at most
/// two minutes, until it is no longer in progress. Returns its outputs.
pub async fn deploy_stack(
    endpoint: &str,
    account: &aws_config::SdkConfig,
    name: &str,
    template: &Value,
    parameters: &[(&str, &str)],
) -> Result<std::collections::BTreeMap<String, String>> {
    let dir = std::env::temp_dir().join("crossdeploy-local");
    std::fs::create_dir_all(&dir)?;
    let body = dir.join(format!("{name}-{}-{}.json", std::process::id(), crate::unique()));
    std::fs::write(&body, serde_json::to_vec(template)?)?;
    let params: Vec<Value> =
        parameters.iter().map(|(k, v)| serde_json::json!({"ParameterKey": k, "ParameterValue": v})).collect();
    let params_file = body.with_extension("params.json");
    std::fs::write(&params_file, serde_json::to_vec(&params)?)?;
    let body_arg = format!("file://{}", body.display());
    let params_arg = format!("file://{}", params_file.display());
    crate::ecs::aws_cli(
        endpoint,
        account,
        &[
            "cloudformation",
            "create-stack",
            "--stack-name",
            name,
            "--template-body",
            &body_arg,
            "--parameters",
            &params_arg,
            "--capabilities",
            "CAPABILITY_IAM",
            "CAPABILITY_NAMED_IAM",
        ],
    )
    .await?;
    let started = std::time::Instant::now();
    let status = loop {
        let status = crate::ecs::aws_cli(
            endpoint,
            account,
            &["cloudformation", "describe-stacks", "--stack-name", name, "--query", "Stacks[0].StackStatus"],
        )
        .await?;
        if !status.ends_with("IN_PROGRESS") || started.elapsed() > std::time::Duration::from_secs(120) {
            break status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    if status != "CREATE_COMPLETE" {
        return Err(format!("stack {name} is {status}, not CREATE_COMPLETE").into());
    }
    let outputs = crate::ecs::aws_cli(
        endpoint,
        account,
        &[
            "cloudformation",
            "describe-stacks",
            "--stack-name",
            name,
            "--query",
            "Stacks[0].Outputs",
            "--output",
            "json",
        ],
    )
    .await?;
    let outputs: Value = serde_json::from_str(&outputs).unwrap_or_default();
    Ok(as_list(&outputs)
        .into_iter()
        .filter_map(|o| Some((o["OutputKey"].as_str()?.to_owned(), o["OutputValue"].as_str()?.to_owned())))
        .collect())
}

/// The resources of a type, by logical id.
pub fn resources<'a>(template: &'a Value, kind: &str) -> Vec<(&'a String, &'a Value)> {
    template["Resources"].as_object().map(|r| r.iter().filter(|(_, v)| v["Type"] == kind).collect()).unwrap_or_default()
}

/// A string property, with `Fn::Sub`'s `${AWS::Region}` and the template's parameters (their
/// defaults) resolved.
fn text(v: &Value, region: &str, template: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("Fn::Sub").and_then(Value::as_str).map(|s| {
            let mut s = s.replace("${AWS::Region}", region);
            for (name, p) in template["Parameters"].as_object().into_iter().flatten() {
                if let Some(default) = p["Default"].as_str() {
                    s = s.replace(&format!("${{{name}}}"), default);
                }
            }
            s
        }),
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
                    .set_entity_url_template(text(&p["Settings"]["EntityUrlTemplate"], region, &t))
                    .set_execution_url_template(text(&p["Settings"]["ExecutionUrlTemplate"], region, &t))
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

//! The templates (template.yaml, infra/*.yaml): least privilege in every policy, a reason next to
//! every skipped checkov check, and each deployed into the local AWS's CloudFormation.
//! cfn-lint, `sam validate --lint` and checkov themselves run in scripts/lint-infra.

use crossdeploy_ledger::{DeploymentRecord, DeploymentStatus, Ledger, TargetKey};
use crossdeploy_local::accounts::{self, SHARED_ACCOUNT, TARGET_ACCOUNT};
use crossdeploy_local::templates::{
    all_templates, deploy_stack, least_privilege_violations, sam_translated, without_unsupported, NO_RESOURCE_SCOPING,
};
use crossdeploy_local::Moto;
use crossdeploy_protocol::PipelineContext;
use serde_json::{json, Value};

#[test]
fn every_policy_in_every_template_grants_least_privilege() {
    let templates = all_templates().unwrap();
    assert_eq!(templates.len(), 3, "template.yaml and the two infra templates");
    let mut statements = 0;
    for (name, t) in &templates {
        statements += crossdeploy_local::templates::policy_statements(t).len();
        let bad = least_privilege_violations(name, t);
        assert!(bad.is_empty(), "least privilege broken:\n{}", bad.join("\n"));
    }
    assert!(statements > 40, "the policies were found ({statements} statements)");
    for (action, why) in NO_RESOURCE_SCOPING {
        println!("allowed on Resource \"*\": {action} ({why})");
    }
}

#[test]
fn the_least_privilege_check_catches_broad_grants() {
    let t = json!({"Resources": {
        "R": {"Type": "AWS::IAM::Role", "Properties": {
            "AssumeRolePolicyDocument": {"Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]},
            "Policies": [{"PolicyDocument": {"Statement": [
                {"Sid": "All", "Effect": "Allow", "Action": "*", "Resource": "arn:aws:s3:::b"},
                {"Sid": "Service", "Effect": "Allow", "Action": ["s3:GetObject", "s3:*"], "Resource": "arn:aws:s3:::b/*"},
                {"Sid": "Star", "Effect": "Allow", "Action": "lambda:UpdateFunctionCode", "Resource": "*"},
                {"Sid": "Fine", "Effect": "Allow", "Action": "codepipeline:AcknowledgeJob", "Resource": "*"},
                {"Sid": "Not", "Effect": "Allow", "NotAction": "iam:*", "Resource": "arn:aws:s3:::b"},
                {"Sid": "Deny", "Effect": "Deny", "Action": "s3:*", "Resource": "*"}
            ]}}]}},
        "K": {"Type": "AWS::KMS::Key", "Properties": {"KeyPolicy": {"Statement": [
            {"Sid": "Admin", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:root"}, "Action": "kms:*", "Resource": "*"},
            {"Sid": "Use", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:root"}, "Action": "kms:Decrypt", "Resource": "*"}
        ]}}}
    }});
    let bad = least_privilege_violations("t", &t);
    let sids: Vec<&str> = bad.iter().map(|b| b.split(": ").nth(1).unwrap_or_default()).collect();
    assert_eq!(bad.len(), 5, "{bad:#?}");
    for needle in [
        "All: action *",
        "Service: action s3:*",
        "Star: lambda:UpdateFunctionCode on Resource",
        "Not: an Allow with NotAction",
        "Admin: action kms:*",
    ] {
        assert!(bad.iter().any(|b| b.contains(needle)), "{needle} not caught: {bad:#?} ({sids:?})");
    }
}

#[test]
fn every_skipped_checkov_check_carries_its_reason_next_to_the_resource() {
    let mut skips = 0;
    for (name, t) in all_templates().unwrap() {
        for (id, r) in t["Resources"].as_object().into_iter().flatten() {
            for skip in r["Metadata"]["checkov"]["skip"].as_array().into_iter().flatten() {
                skips += 1;
                let reason = skip["comment"].as_str().unwrap_or_default();
                assert!(reason.len() > 30, "{name}: {id} skips {} without a reason", skip["id"]);
            }
        }
    }
    assert!(skips > 0);
}

fn param<'a>(outputs: &'a std::collections::BTreeMap<String, String>, key: &str) -> &'a str {
    outputs.get(key).map(String::as_str).unwrap_or_else(|| panic!("no output {key} in {outputs:?}"))
}

/// The three stacks, as a user would deploy them, in the local AWS: template.yaml (translated
/// by aws-sam-translator) in the shared services account, the target-account template in
/// 222222222222 with the first stack's outputs, the example pipeline beside the first.
#[tokio::test]
async fn the_templates_deploy_into_the_local_aws() {
    let moto = Moto::start().await.unwrap();
    let shared = accounts::account_config(&moto.endpoint, SHARED_ACCOUNT).await.unwrap();
    let target = accounts::account_config(&moto.endpoint, TARGET_ACCOUNT).await.unwrap();
    // The functions' code, where `sam package` would have put it.
    let code_bucket = accounts::artifact_bucket(&shared).await.unwrap();
    let package = crossdeploy_local::fixtures::lambda_package("bootstrap");
    accounts::put_artifact(&shared, &code_bucket, "crossdeploy/bootstrap.zip", package).await.unwrap();

    let translated = sam_translated(&format!("s3://{code_bucket}/crossdeploy/bootstrap.zip")).unwrap();
    for (id, f) in
        translated["Resources"].as_object().unwrap().iter().filter(|(_, r)| r["Type"] == "AWS::Lambda::Function")
    {
        assert_eq!(f["Properties"]["Architectures"], json!(["arm64"]), "{id}");
        assert_eq!(f["Properties"]["Runtime"], "provided.al2023", "{id}");
    }
    let (shared_template, notes) = without_unsupported(&translated);
    notes.iter().for_each(|n| println!("{n}"));
    assert!(notes.iter().any(|n| n.contains("AWS::Events::EventBusPolicy")), "{notes:?}");
    let target_role = accounts::target_role(TARGET_ACCOUNT);
    let key = format!("arn:aws:kms:{}:{SHARED_ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab", accounts::REGION);
    let out = deploy_stack(
        &moto.endpoint,
        &shared,
        "crossdeploy",
        &shared_template,
        &[
            ("TargetAccountIds", "222222222222,333333333333"),
            ("AllowedTargetRoles", &target_role),
            ("ExternalId", accounts::EXTERNAL_ID),
            ("ArtifactBucket", "crossdeploy-artifacts"),
            ("ArtifactKeyArn", &key),
        ],
    )
    .await
    .unwrap();

    // The dashboard, deployed; the alarms on failed rollbacks (the metric deploy-rollback emits)
    // and on the dead-letter queues, as the template declares them (moto's CloudFormation makes
    // no alarms).
    let dashboard =
        aws_sdk_cloudwatch::Client::new(&shared).get_dashboard().dashboard_name("crossdeploy").send().await.unwrap();
    let body: Value = serde_json::from_str(dashboard.dashboard_body().unwrap_or_default()).unwrap();
    let titles: Vec<&str> =
        body["widgets"].as_array().unwrap().iter().filter_map(|w| w["properties"]["title"].as_str()).collect();
    assert!(titles.contains(&"Rollbacks by trigger and result") && titles.contains(&"Alarms"), "{titles:?}");
    let declared = &translated["Resources"];
    let rollbacks = &declared["RollbackFailuresAlarm"]["Properties"];
    assert_eq!(
        (rollbacks["Namespace"].as_str(), rollbacks["MetricName"].as_str()),
        (Some("crossdeploy"), Some("Rollbacks"))
    );
    assert_eq!(rollbacks["Dimensions"], json!([{"Name": "Result", "Value": "Failed"}]));
    for (alarm, queue) in
        [("FailedInvocationsAlarm", "FailedInvocationsQueue"), ("UndeliveredEventsAlarm", "UndeliveredEventsQueue")]
    {
        let p = &declared[alarm]["Properties"];
        assert_eq!(p["MetricName"], "ApproximateNumberOfMessagesVisible", "{alarm}");
        assert_eq!(p["Dimensions"][0]["Value"]["Fn::GetAtt"][0], queue, "{alarm}");
    }

    // The four functions, as template.yaml says.
    let lambda = aws_sdk_lambda::Client::new(&shared);
    for name in ["pipeline-job-worker", "lambda-alias-updater", "ecs-taskdef-updater", "deploy-rollback"] {
        let f = lambda.get_function_configuration().function_name(format!("crossdeploy-{name}")).send().await.unwrap();
        assert_eq!(f.runtime().map(|r| r.as_str()), Some("provided.al2023"), "{name}");
        // moto's CloudFormation drops Architectures (its functions are all x86_64): the template's is checked below.
        assert_eq!(f.handler(), Some("bootstrap"));
        let env = f.environment().and_then(|e| e.variables()).cloned().unwrap_or_default();
        // Every function reads the ledger: the updaters to check where a request comes from.
        assert!(env.contains_key("CROSSDEPLOY_LEDGER_TABLE"), "{name}");
        if name.ends_with("updater") {
            assert_eq!(env.get("CROSSDEPLOY_ALLOWED_TARGET_ROLES"), Some(&target_role), "{name}");
            // The updater may read leases only: nothing else of the ledger, and never write.
            let role = &translated["Resources"]
                [if name.starts_with("lambda") { "LambdaUpdaterRole" } else { "EcsUpdaterRole" }];
            let statements = role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"].as_array().unwrap();
            let ledger: Vec<_> =
                statements.iter().filter(|st| st["Action"].to_string().contains("dynamodb:")).collect();
            assert_eq!(ledger.len(), 1, "{name}: {ledger:?}");
            assert_eq!(ledger[0]["Action"], "dynamodb:GetItem", "{name}");
            assert_eq!(ledger[0]["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"], json!(["LEASE#*"]));
        } else {
            assert_eq!(
                env.get("CROSSDEPLOY_LAMBDA_UPDATER").map(String::as_str),
                Some("crossdeploy-lambda-alias-updater")
            );
            assert_eq!(env.get("CROSSDEPLOY_ECS_UPDATER").map(String::as_str), Some("crossdeploy-ecs-taskdef-updater"));
            assert!(env.contains_key("CROSSDEPLOY_LEDGER_TABLE"), "{name}");
        }
    }

    // The ledger table works with the ledger's code: its key, its indexes, its TTL.
    let table = param(&out, "LedgerTableName").to_owned();
    let dynamodb = aws_sdk_dynamodb::Client::new(&shared);
    // moto's CloudFormation drops TTL, point-in-time recovery and SSE settings: the template's are checked.
    let t = &translated["Resources"]["LedgerTable"]["Properties"];
    assert_eq!(t["TimeToLiveSpecification"], json!({"AttributeName": "expires_at", "Enabled": true}));
    assert_eq!(t["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"], true);
    assert_eq!(t["SSESpecification"]["SSEType"], "KMS");
    assert_eq!(t["BillingMode"], "PAY_PER_REQUEST");
    let ledger = Ledger::new(dynamodb, &table);
    let record = DeploymentRecord {
        deployment_id: "d1".into(),
        target: TargetKey::lambda(TARGET_ACCOUNT, accounts::REGION, "orders", "live"),
        role_arn: target_role.clone(),
        pipeline: PipelineContext {
            job_id: "d1".into(),
            pipeline_name: Some("orders".into()),
            execution_id: Some("e1".into()),
            stage: Some("Deploy-dev".into()),
            action: None,
        },
        started_at: 1_000,
        finished_at: Some(2_000),
        status: DeploymentStatus::Succeeded,
        previous: Some("1".into()),
        deployed: Some("2".into()),
        serving: None,
        outputs: Default::default(),
        message: None,
        alarm_names: vec!["orders-5xx".into()],
        rollback: None,
    };
    ledger.start_deployment(&record).await.unwrap();
    assert_eq!(ledger.deployments_in_stage("orders", "e1", "Deploy-dev").await.unwrap(), vec![record.clone()]);
    assert_eq!(ledger.deployments_in_account(TARGET_ACCOUNT, accounts::REGION, 0).await.unwrap(), vec![record]);

    // A target account, trusting exactly the updaters' roles, with the ExternalId.
    let (target_template, notes) =
        without_unsupported(&crossdeploy_local::templates::template("infra/target-account.yaml").unwrap());
    notes.iter().for_each(|n| println!("{n}"));
    let updaters = format!("{},{}", param(&out, "LambdaUpdaterRoleArn"), param(&out, "EcsUpdaterRoleArn"));
    let target_out = deploy_stack(
        &moto.endpoint,
        &target,
        "crossdeploy-target",
        &target_template,
        &[
            ("SharedServicesAccountId", SHARED_ACCOUNT),
            ("UpdaterRoleArns", &updaters),
            ("ExternalId", accounts::EXTERNAL_ID),
            ("SharedEventBusArn", param(&out, "TargetEventBusArn")),
            ("RoleRegion", accounts::REGION),
        ],
    )
    .await
    .unwrap();
    assert_eq!(param(&target_out, "DeployRoleArn"), target_role, "the role template.yaml's allow-list names");
    let role = aws_sdk_iam::Client::new(&target).get_role().role_name("crossdeploy-target").send().await.unwrap();
    let trust = role.role().and_then(|r| r.assume_role_policy_document()).unwrap_or_default();
    let trust: Value = serde_json::from_str(&crossdeploy_local::percent_decode(trust)).unwrap();
    let first = &trust["Statement"][0];
    assert_eq!(first["Condition"]["StringEquals"]["sts:ExternalId"], accounts::EXTERNAL_ID);
    assert_eq!(
        first["Principal"]["AWS"],
        json!([param(&out, "LambdaUpdaterRoleArn"), param(&out, "EcsUpdaterRoleArn")])
    );

    // The staging bucket for packages over 50 MB: under the name the Lambda updater derives,
    // versioned (moto's CloudFormation drops versioning: the template's is checked), expiring,
    // and writable by the deploy role alone.
    let staging = param(&target_out, "StagingBucketName");
    assert_eq!(staging, lambda_alias_updater::staging_bucket(TARGET_ACCOUNT, accounts::REGION));
    aws_sdk_s3::Client::new(&target).head_bucket().bucket(staging).send().await.unwrap();
    let declared = crossdeploy_local::templates::template("infra/target-account.yaml").unwrap();
    let sb = &declared["Resources"]["StagingBucket"]["Properties"];
    assert_eq!(sb["VersioningConfiguration"]["Status"], "Enabled");
    assert_eq!(sb["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"], 3);
    assert_eq!(sb["PublicAccessBlockConfiguration"]["RestrictPublicBuckets"], true);
    let policy = &declared["Resources"]["StagingBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"];
    assert_eq!(policy[0]["Condition"]["Bool"]["aws:SecureTransport"], "false", "{policy}");
    assert_eq!(policy[1]["Effect"], "Deny");
    assert!(policy[1]["Condition"]["ArnNotEquals"]["aws:PrincipalArn"].is_object(), "{policy}");

    // The example pipeline's bucket, key, repository and roles.
    let (pipeline_template, notes) =
        without_unsupported(&crossdeploy_local::templates::template("infra/shared-services-pipeline.yaml").unwrap());
    notes.iter().for_each(|n| println!("{n}"));
    assert!(notes.iter().any(|n| n.contains("AWS::CodePipeline::Pipeline")), "{notes:?}");
    let pipeline_out = deploy_stack(
        &moto.endpoint,
        &shared,
        "crossdeploy-example-pipeline",
        &pipeline_template,
        &[
            ("ConnectionArn", &format!("arn:aws:codeconnections:us-east-1:{SHARED_ACCOUNT}:connection/example")),
            ("FullRepositoryId", "acme/orders"),
            ("DevAccountId", TARGET_ACCOUNT),
            ("QaAccountId", "333333333333"),
            ("ProdAccountId", "444444444444"),
            ("KeyAdministratorArns", &format!("arn:aws:iam::{SHARED_ACCOUNT}:role/key-admin")),
            ("StackDeployerArn", &format!("arn:aws:iam::{SHARED_ACCOUNT}:role/crossdeploy-local-admin")),
        ],
    )
    .await
    .unwrap();
    // KMS's lockout safety check: the role that deploys the stack may administer the key.
    let key_id = param(&pipeline_out, "ArtifactKeyArn");
    let key_policy = crossdeploy_local::ecs::aws_cli(
        &moto.endpoint,
        &shared,
        &["kms", "get-key-policy", "--key-id", key_id, "--policy-name", "default", "--output", "json"],
    )
    .await
    .unwrap();
    let key_policy: Value = serde_json::from_str(&key_policy).unwrap();
    // The CLI gives the policy as a string of JSON, or (some versions) already parsed.
    let key_policy = match &key_policy["Policy"] {
        Value::String(text) => serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}")),
        other => other.clone(),
    };
    let admins = &key_policy["Statement"][0];
    assert_eq!(admins["Sid"], "KeyAdministration");
    let principals = admins["Principal"]["AWS"].to_string();
    assert!(
        principals.contains("role/key-admin") && principals.contains("role/crossdeploy-local-admin"),
        "{principals}"
    );
    assert!(admins["Action"].as_array().unwrap().iter().any(|a| a == "kms:Put*"), "{admins}");
    let bucket = param(&pipeline_out, "ArtifactBucketName");
    let s3 = aws_sdk_s3::Client::new(&shared);
    // moto's CloudFormation drops versioning and the public access block: the template's are checked.
    let b = &pipeline_template["Resources"]["ArtifactBucket"]["Properties"];
    assert_eq!(b["VersioningConfiguration"]["Status"], "Enabled");
    assert_eq!(
        b["PublicAccessBlockConfiguration"],
        json!({"BlockPublicAcls": true, "BlockPublicPolicy": true, "IgnorePublicAcls": true, "RestrictPublicBuckets": true})
    );
    assert_eq!(b["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["BucketKeyEnabled"], true);
    let sse = s3.get_bucket_encryption().bucket(bucket).send().await.unwrap();
    let rule = &sse.server_side_encryption_configuration().unwrap().rules()[0];
    let by_default = rule.apply_server_side_encryption_by_default().unwrap();
    assert_eq!(by_default.sse_algorithm().as_str(), "aws:kms");
    assert_eq!(by_default.kms_master_key_id(), Some(param(&pipeline_out, "ArtifactKeyArn")));
}

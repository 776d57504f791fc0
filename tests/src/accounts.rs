//! Accounts in the local AWS: moto lets credentials from `AssumeRole` into
//! `arn:aws:iam::<account>:role/<any>` act in that account.

use crate::Result;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::Runtime;
use std::time::SystemTime;

/// The shared services account: pipelines, crossdeploy's functions, the artifact bucket.
pub const SHARED_ACCOUNT: &str = "111111111111";
/// The target account the scenarios deploy into.
pub const TARGET_ACCOUNT: &str = "222222222222";
/// A second target account holding an identical function that must stay untouched.
pub const OTHER_ACCOUNT: &str = "333333333333";
pub const REGION: &str = "us-east-1";
pub const TARGET_ROLE_NAME: &str = "crossdeploy-target";
pub const EXTERNAL_ID: &str = "crossdeploy-local-external-id";

pub fn target_role(account: &str) -> String {
    format!("arn:aws:iam::{account}:role/{TARGET_ROLE_NAME}")
}

/// A configuration against the local AWS with these credentials.
pub async fn config_with(endpoint: &str, credentials: Credentials) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(credentials)
        .load()
        .await
}

/// Credentials acting in `account`.
pub async fn account_credentials(endpoint: &str, account: &str) -> Result<Credentials> {
    let default = config_with(endpoint, Credentials::new("test", "test", None, None, "moto-default")).await;
    let out = aws_sdk_sts::Client::new(&default)
        .assume_role()
        .role_arn(format!("arn:aws:iam::{account}:role/crossdeploy-local-admin"))
        .role_session_name("crossdeploy-local")
        .send()
        .await?;
    let c = out.credentials.ok_or("moto's AssumeRole gave no credentials")?;
    Ok(Credentials::new(
        c.access_key_id,
        c.secret_access_key,
        Some(c.session_token),
        SystemTime::try_from(c.expiration).ok(),
        "moto-account",
    ))
}

pub async fn account_config(endpoint: &str, account: &str) -> Result<SdkConfig> {
    Ok(config_with(endpoint, account_credentials(endpoint, account).await?).await)
}

/// A new artifact bucket in the shared services account.
pub async fn artifact_bucket(shared: &SdkConfig) -> Result<String> {
    let bucket = format!("crossdeploy-artifacts-{}-{}", std::process::id(), crate::unique());
    aws_sdk_s3::Client::new(shared).create_bucket().bucket(&bucket).send().await?;
    Ok(bucket)
}

pub async fn put_artifact(shared: &SdkConfig, bucket: &str, key: &str, bytes: Vec<u8>) -> Result<()> {
    aws_sdk_s3::Client::new(shared).put_object().bucket(bucket).key(key).body(bytes.into()).send().await?;
    Ok(())
}

/// A function as a team would have it before its first crossdeploy run: an execution role,
/// the function, version 1 published, and `alias` pointing at it.
pub async fn create_function(target: &SdkConfig, name: &str, alias: &str, package: Vec<u8>) -> Result<()> {
    let iam = aws_sdk_iam::Client::new(target);
    let role_name = format!("{name}-exec");
    let role_arn = match iam
        .create_role()
        .role_name(&role_name)
        .assume_role_policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#)
        .send()
        .await
    {
        Ok(out) => out.role.map(|r| r.arn).ok_or("CreateRole gave no role")?,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_entity_already_exists_exception()) => {
            iam.get_role().role_name(&role_name).send().await?.role.map(|r| r.arn).ok_or("GetRole gave no role")?
        }
        Err(e) => return Err(e.into()),
    };
    let lambda = aws_sdk_lambda::Client::new(target);
    let created = lambda
        .create_function()
        .function_name(name)
        .runtime(Runtime::Providedal2023)
        .handler("bootstrap")
        .role(role_arn)
        .code(aws_sdk_lambda::types::FunctionCode::builder().zip_file(Blob::new(package)).build())
        .send()
        .await;
    match created {
        Ok(_) => {}
        // The SDK retried a create whose answer was lost (a loaded machine): the function is ours.
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_conflict_exception()) => {}
        Err(e) => return Err(e.into()),
    }
    let version = lambda.publish_version().function_name(name).send().await?.version.ok_or("no version")?;
    match lambda.create_alias().function_name(name).name(alias).function_version(version).send().await {
        Ok(_) => Ok(()),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_conflict_exception()) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// What a function in a target account looks like now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionState {
    pub alias_version: String,
    /// Extra versions the alias routes traffic to, with their weights.
    pub alias_routing: Vec<(String, String)>,
    pub alias_version_sha: String,
    pub latest_sha: String,
    /// Published versions (not `$LATEST`).
    pub versions: Vec<String>,
}

pub async fn function_state(target: &SdkConfig, name: &str, alias: &str) -> Result<FunctionState> {
    let lambda = aws_sdk_lambda::Client::new(target);
    let a = lambda.get_alias().function_name(name).name(alias).send().await?;
    let alias_version = a.function_version.clone().unwrap_or_default();
    let mut alias_routing: Vec<(String, String)> = a
        .routing_config
        .and_then(|r| r.additional_version_weights)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect();
    alias_routing.sort();
    let versioned = lambda.get_function_configuration().function_name(name).qualifier(&alias_version).send().await?;
    let latest = lambda.get_function_configuration().function_name(name).send().await?;
    let mut versions: Vec<String> = lambda
        .list_versions_by_function()
        .function_name(name)
        .send()
        .await?
        .versions
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| v.version)
        .filter(|v| v != "$LATEST")
        .collect();
    versions.sort_by_key(|v| v.parse::<u64>().unwrap_or(u64::MAX));
    Ok(FunctionState {
        alias_version,
        alias_routing,
        alias_version_sha: versioned.code_sha256.unwrap_or_default(),
        latest_sha: latest.code_sha256.unwrap_or_default(),
        versions,
    })
}

/// The ledger table, as template.yaml declares it: key `pk` + `sk`, on-demand.
pub async fn create_ledger_table(shared: &SdkConfig) -> Result<String> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
        ScalarAttributeType,
    };
    use crossdeploy_ledger::{ACCOUNT_INDEX, ACCOUNT_INDEX_KEY, EXECUTION_INDEX, EXECUTION_INDEX_KEY};
    let table = format!("crossdeploy-ledger-{}", crate::unique());
    let attr =
        |name: &str| AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build();
    let key = |name: &str, kind| KeySchemaElement::builder().attribute_name(name).key_type(kind).build();
    let index = |name: &str, hash: &str| -> Result<GlobalSecondaryIndex> {
        Ok(GlobalSecondaryIndex::builder()
            .index_name(name)
            .key_schema(key(hash, KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .projection(Projection::builder().projection_type(ProjectionType::All).build())
            .build()?)
    };
    // The same table as template.yaml's LedgerTable.
    aws_sdk_dynamodb::Client::new(shared)
        .create_table()
        .table_name(&table)
        .attribute_definitions(attr("pk")?)
        .attribute_definitions(attr("sk")?)
        .attribute_definitions(attr(EXECUTION_INDEX_KEY)?)
        .attribute_definitions(attr(ACCOUNT_INDEX_KEY)?)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .global_secondary_indexes(index(EXECUTION_INDEX, EXECUTION_INDEX_KEY)?)
        .global_secondary_indexes(index(ACCOUNT_INDEX, ACCOUNT_INDEX_KEY)?)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await?;
    Ok(table)
}

/// A metric alarm in an account (state OK until set otherwise).
pub async fn create_alarm(account: &SdkConfig, name: &str) -> Result<()> {
    use aws_sdk_cloudwatch::types::{ComparisonOperator, Statistic};
    aws_sdk_cloudwatch::Client::new(account)
        .put_metric_alarm()
        .alarm_name(name)
        .namespace("AWS/Lambda")
        .metric_name("Errors")
        .statistic(Statistic::Sum)
        .period(60)
        .evaluation_periods(1)
        .threshold(5.0)
        .comparison_operator(ComparisonOperator::GreaterThanThreshold)
        .send()
        .await?;
    Ok(())
}

/// `set-alarm-state`, as a test or an operator would.
pub async fn set_alarm_state(
    account: &SdkConfig,
    name: &str,
    state: aws_sdk_cloudwatch::types::StateValue,
    reason: &str,
) -> Result<()> {
    aws_sdk_cloudwatch::Client::new(account)
        .set_alarm_state()
        .alarm_name(name)
        .state_value(state)
        .state_reason(reason)
        .send()
        .await?;
    Ok(())
}

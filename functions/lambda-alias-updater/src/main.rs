use crossdeploy_aws::Deadline;
use lambda_alias_updater::{handle, Deps, FALLBACK_BUDGET};
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    crossdeploy_aws::init_tracing();
    let config = crossdeploy_aws::load_sdk_config().await;
    let deps = Deps::from_config(&config);
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let deadline = Deadline::from_epoch_millis(event.context.deadline, FALLBACK_BUDGET);
        let deps = &deps;
        async move { Ok::<_, Error>(handle(event.payload, deps, deadline).await) }
    }))
    .await
}

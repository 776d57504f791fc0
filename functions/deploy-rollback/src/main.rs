use crossdeploy_aws::Deadline;
use deploy_rollback::{handle_invocation, Rollback, FALLBACK_BUDGET};
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    crossdeploy_aws::init_tracing();
    let config = crossdeploy_aws::load_sdk_config().await;
    let rollback = Rollback::from_config(&config)?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let deadline = Deadline::from_epoch_millis(event.context.deadline, FALLBACK_BUDGET);
        let rollback = &rollback;
        async move { handle_invocation(event.payload, rollback, deadline, &event.context.request_id).await }
    }))
    .await
}

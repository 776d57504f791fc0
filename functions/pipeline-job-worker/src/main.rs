use crossdeploy_aws::Deadline;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use pipeline_job_worker::{handle_event, Worker, FALLBACK_BUDGET};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    crossdeploy_aws::init_tracing();
    let config = crossdeploy_aws::load_sdk_config().await;
    let worker = Arc::new(Worker::from_config(&config)?);
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let deadline = Deadline::from_epoch_millis(event.context.deadline, FALLBACK_BUDGET);
        let worker = worker.clone();
        async move { handle_event(event.payload, worker, deadline, &event.context.request_id).await }
    }))
    .await
}

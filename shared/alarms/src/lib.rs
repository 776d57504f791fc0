//! The alarms that gate a deployment: `DescribeAlarms` in the target account, through the
//! assumed role. An alarm named in the configuration that does not exist is an error, not a pass.

use aws_sdk_cloudwatch::types::StateValue;
use aws_sdk_cloudwatch::Client;
use crossdeploy_aws::{retry, Backoff, Deadline, ErrorInfo};

/// An alarm in the ALARM state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firing {
    pub name: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AlarmError {
    #[error("alarm{} {} named in AlarmNames do{} not exist in account {account}; check AlarmNames and Region", if names.len() > 1 { "s" } else { "" }, names.join(", "), if names.len() > 1 { "" } else { "es" })]
    Missing { names: Vec<String>, account: String },
    #[error("failed to read alarms {} in account {account}: {error}", names.join(", "))]
    Read { names: Vec<String>, account: String, error: ErrorInfo },
}

/// The first of `names` in ALARM, if any. Metric and composite alarms both count.
pub async fn firing_alarm(
    cloudwatch: &Client,
    names: &[String],
    account: &str,
    deadline: Deadline,
) -> Result<Option<Firing>, AlarmError> {
    if names.is_empty() {
        return Ok(None);
    }
    let out = retry(
        "DescribeAlarms",
        Backoff::CONTROL_PLANE,
        deadline,
        |e: &aws_sdk_cloudwatch::error::SdkError<
            aws_sdk_cloudwatch::operation::describe_alarms::DescribeAlarmsError,
        >| crossdeploy_aws::is_transient(e),
        || {
            cloudwatch
                .describe_alarms()
                .set_alarm_names(Some(names.to_vec()))
                .alarm_types(aws_sdk_cloudwatch::types::AlarmType::MetricAlarm)
                .alarm_types(aws_sdk_cloudwatch::types::AlarmType::CompositeAlarm)
                .send()
        },
    )
    .await
    .map_err(|e| AlarmError::Read {
        names: names.to_vec(),
        account: account.to_owned(),
        error: ErrorInfo::from_sdk(&e),
    })?;
    let mut found: Vec<(String, Option<StateValue>, String)> = Vec::new();
    for a in out.metric_alarms() {
        found.push((
            a.alarm_name().unwrap_or_default().to_owned(),
            a.state_value().cloned(),
            a.state_reason().unwrap_or_default().to_owned(),
        ));
    }
    for a in out.composite_alarms() {
        found.push((
            a.alarm_name().unwrap_or_default().to_owned(),
            a.state_value().cloned(),
            a.state_reason().unwrap_or_default().to_owned(),
        ));
    }
    let missing: Vec<String> = names.iter().filter(|n| !found.iter().any(|(f, _, _)| f == *n)).cloned().collect();
    if !missing.is_empty() {
        return Err(AlarmError::Missing { names: missing, account: account.to_owned() });
    }
    Ok(names.iter().find_map(|n| {
        found
            .iter()
            .find(|(f, state, _)| f == n && *state == Some(StateValue::Alarm))
            .map(|(name, _, reason)| Firing { name: name.clone(), reason: reason.clone() })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_cloudwatch::operation::describe_alarms::DescribeAlarmsOutput;
    use aws_sdk_cloudwatch::types::MetricAlarm;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use std::time::Duration;

    fn alarm(name: &str, state: StateValue) -> MetricAlarm {
        MetricAlarm::builder()
            .alarm_name(name)
            .state_value(state)
            .state_reason(format!("{name} threshold crossed"))
            .build()
    }

    #[tokio::test]
    async fn the_first_alarm_in_alarm_is_named_with_its_reason() {
        let rule = mock!(Client::describe_alarms).then_output(|| {
            DescribeAlarmsOutput::builder()
                .metric_alarms(alarm("errors", StateValue::Ok))
                .metric_alarms(alarm("latency", StateValue::Alarm))
                .build()
        });
        let cw = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&rule]);
        let names = vec!["errors".to_owned(), "latency".to_owned()];
        let firing = firing_alarm(&cw, &names, "222222222222", Deadline::after(Duration::from_secs(10))).await.unwrap();
        assert_eq!(firing, Some(Firing { name: "latency".into(), reason: "latency threshold crossed".into() }));
    }

    #[tokio::test]
    async fn alarms_ok_or_none_named_let_the_deployment_go_on() {
        let rule = mock!(Client::describe_alarms)
            .then_output(|| DescribeAlarmsOutput::builder().metric_alarms(alarm("errors", StateValue::Ok)).build());
        let cw = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&rule]);
        let d = Deadline::after(Duration::from_secs(10));
        assert_eq!(firing_alarm(&cw, &["errors".to_owned()], "222222222222", d).await.unwrap(), None);
        assert_eq!(firing_alarm(&cw, &[], "222222222222", d).await.unwrap(), None);
        assert_eq!(rule.num_calls(), 1, "no alarms named, no call");
    }

    #[tokio::test]
    async fn a_transient_fault_is_retried_within_the_deadline() {
        use aws_sdk_cloudwatch::error::ErrorMetadata;
        use aws_sdk_cloudwatch::operation::describe_alarms::DescribeAlarmsError;
        let unavailable = mock!(Client::describe_alarms).then_error(|| {
            DescribeAlarmsError::generic(ErrorMetadata::builder().code("ServiceUnavailable").message("busy").build())
        });
        let ok = mock!(Client::describe_alarms)
            .then_output(|| DescribeAlarmsOutput::builder().metric_alarms(alarm("errors", StateValue::Ok)).build());
        let cw = mock_client!(aws_sdk_cloudwatch, RuleMode::Sequential, [&unavailable, &ok]);
        let d = Deadline::after(Duration::from_secs(10));
        assert_eq!(firing_alarm(&cw, &["errors".to_owned()], "222222222222", d).await.unwrap(), None);
        assert_eq!((unavailable.num_calls(), ok.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn an_alarm_that_does_not_exist_is_an_error_naming_it() {
        let rule = mock!(Client::describe_alarms).then_output(|| DescribeAlarmsOutput::builder().build());
        let cw = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&rule]);
        let e = firing_alarm(&cw, &["typo".to_owned()], "222222222222", Deadline::after(Duration::from_secs(10)))
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "alarm typo named in AlarmNames does not exist in account 222222222222; check AlarmNames and Region"
        );
    }
}

//! The deployment strategy asked for, checked against the service before anything changes, and
//! the service's `deploymentConfiguration` that asks ECS for it.

use crate::{EcsError, ServiceRef};
use aws_sdk_ecs::types::{
    CanaryConfiguration, DeploymentAlarms, DeploymentConfiguration, DeploymentStrategy, LinearConfiguration, Service,
};
use crossdeploy_protocol::{EcsSpec, EcsStrategy};

/// What the action asks of the service's deployment configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked<'a> {
    pub strategy: Option<EcsStrategy>,
    pub bake_time_minutes: Option<u32>,
    /// Alarms to set as the service's deployment alarms (with rollback); empty: left as they are.
    pub ecs_alarms: &'a [String],
}

impl<'a> Asked<'a> {
    pub fn of(spec: &EcsSpec, alarm_names: &'a [String]) -> Self {
        Asked {
            strategy: spec.strategy,
            bake_time_minutes: spec.bake_time_minutes,
            ecs_alarms: if spec.ecs_alarms { alarm_names } else { &[] },
        }
    }
}

/// The strategy the service deploys with now.
fn current_strategy(service: &Service) -> DeploymentStrategy {
    service.deployment_configuration().and_then(|c| c.strategy()).cloned().unwrap_or(DeploymentStrategy::Rolling)
}

/// Whether Service Connect carries the service's traffic (its primary deployment says so).
fn uses_service_connect(service: &Service) -> bool {
    service
        .deployments()
        .iter()
        .find(|d| d.status() == Some("PRIMARY"))
        .and_then(|d| d.service_connect_configuration())
        .is_some_and(|c| c.enabled())
}

/// A ConfigurationError, before any change, when the service cannot deploy the way asked:
/// blue/green, canary and linear shift production traffic, which needs load balancers whose
/// advancedConfiguration names an alternate target group, a production listener rule and the
/// role ECS uses for them, or Service Connect; a bake time needs one of those strategies.
pub fn check(s: &ServiceRef<'_>, service: &Service, asked: &Asked<'_>) -> Result<(), EcsError> {
    let strategy_name = asked.strategy.map(|s| s.to_string());
    let shifting = match asked.strategy {
        Some(strategy) => strategy.shifts_traffic(),
        None => current_strategy(service) != DeploymentStrategy::Rolling,
    };
    if asked.bake_time_minutes.is_some() && !shifting {
        return Err(EcsError::Configuration(format!(
            "BakeTimeMinutes is given, but {} deploys with the rolling strategy, which has no bake: set DeploymentStrategy to BlueGreen, Canary or Linear, or leave BakeTimeMinutes out",
            s.describe()
        )));
    }
    if !shifting || uses_service_connect(service) {
        return Ok(());
    }
    let strategy = strategy_name.unwrap_or_else(|| current_strategy(service).as_str().to_owned());
    let balancers = service.load_balancers();
    if balancers.is_empty() {
        return Err(EcsError::Configuration(format!(
            "{} cannot deploy {strategy}: it has no load balancer and no Service Connect. Blue/green, canary and linear deployments shift production traffic, through a load balancer whose advancedConfiguration names an alternate target group, a production listener rule and a role, or through Service Connect; nothing was changed",
            s.describe()
        )));
    }
    for lb in balancers {
        let group = lb.target_group_arn().unwrap_or("(no target group)");
        let advanced = lb.advanced_configuration();
        let missing: Vec<&str> = [
            ("alternateTargetGroupArn", advanced.and_then(|a| a.alternate_target_group_arn())),
            ("productionListenerRule", advanced.and_then(|a| a.production_listener_rule())),
            ("roleArn", advanced.and_then(|a| a.role_arn())),
        ]
        .into_iter()
        .filter(|(_, v)| v.is_none_or(str::is_empty))
        .map(|(k, _)| k)
        .collect();
        if !missing.is_empty() {
            return Err(EcsError::Configuration(format!(
                "{} cannot deploy {strategy}: the load balancer of target group {group} has no advancedConfiguration.{} (update the service with them first); nothing was changed",
                s.describe(),
                missing.join(", advancedConfiguration.")
            )));
        }
    }
    Ok(())
}

/// The service's deploymentConfiguration with what is asked set; `None` when that is what it
/// has already (UpdateService then leaves it alone). Everything else it has is kept: ECS may
/// take a deploymentConfiguration as a whole.
pub fn configuration(service: &Service, asked: &Asked<'_>) -> Result<Option<DeploymentConfiguration>, EcsError> {
    let current =
        service.deployment_configuration().cloned().unwrap_or_else(|| DeploymentConfiguration::builder().build());
    let mut next = current.clone();
    if let Some(strategy) = asked.strategy {
        next.strategy = Some(DeploymentStrategy::from(strategy.ecs_name()));
        match strategy {
            EcsStrategy::Canary { percent, minutes } => {
                next.canary_configuration = Some(
                    CanaryConfiguration::builder()
                        .canary_percent(f64::from(percent))
                        .canary_bake_time_in_minutes(minutes as i32)
                        .build(),
                );
            }
            EcsStrategy::Linear { percent, minutes } => {
                next.linear_configuration = Some(
                    LinearConfiguration::builder()
                        .step_percent(f64::from(percent))
                        .step_bake_time_in_minutes(minutes as i32)
                        .build(),
                );
            }
            EcsStrategy::Rolling | EcsStrategy::BlueGreen => {}
        }
    }
    if let Some(bake) = asked.bake_time_minutes {
        next.bake_time_in_minutes = Some(bake as i32);
    }
    if !asked.ecs_alarms.is_empty() {
        next.alarms = Some(
            DeploymentAlarms::builder()
                .set_alarm_names(Some(asked.ecs_alarms.to_vec()))
                .enable(true)
                .rollback(true)
                .build()
                .map_err(|e| EcsError::BadRequest(format!("the deployment alarms could not be built: {e}")))?,
        );
    }
    Ok((next != current).then_some(next))
}

/// How long the deployment bakes with `config`, in minutes: a canary's wait, a linear
/// deployment's steps below 100% times their wait, and `bakeTimeInMinutes`; with ECS's defaults
/// where a field is absent (canary 10 minutes, linear 10% every 6 minutes).
pub fn bake_minutes(config: &DeploymentConfiguration) -> u64 {
    let positive = |v: Option<i32>, default: i32| u64::try_from(v.unwrap_or(default)).unwrap_or(0);
    let shift = match config.strategy() {
        Some(DeploymentStrategy::Canary) => {
            positive(config.canary_configuration().and_then(|c| c.canary_bake_time_in_minutes()), 10)
        }
        Some(DeploymentStrategy::Linear) => {
            let linear = config.linear_configuration();
            let step = linear.and_then(|l| l.step_percent()).unwrap_or(10.0).max(3.0);
            let steps = ((100.0 / step).ceil() as u64).saturating_sub(1);
            steps * positive(linear.and_then(|l| l.step_bake_time_in_minutes()), 6)
        }
        _ => 0,
    };
    let shifting = matches!(
        config.strategy(),
        Some(DeploymentStrategy::BlueGreen | DeploymentStrategy::Canary | DeploymentStrategy::Linear)
    );
    shift + if shifting { positive(config.bake_time_in_minutes(), 0) } else { 0 }
}

/// A ConfigurationError, before any change, when the deployment the service would run cannot
/// end within `timeout` (TimeoutMinutes would stop it during its bake), or is blue/green with no
/// bake time (ECS requires one).
pub fn check_bakes(
    s: &ServiceRef<'_>,
    config: Option<&DeploymentConfiguration>,
    timeout: std::time::Duration,
) -> Result<(), EcsError> {
    let Some(config) = config else { return Ok(()) };
    if config.strategy() == Some(&DeploymentStrategy::BlueGreen) && config.bake_time_in_minutes().is_none() {
        return Err(EcsError::Configuration(format!(
            "{} would deploy BlueGreen with no bake time, which ECS requires: set BakeTimeMinutes (0 for none); nothing was changed",
            s.describe()
        )));
    }
    let bakes = bake_minutes(config);
    let minutes = timeout.as_secs() / 60;
    if bakes >= minutes {
        return Err(EcsError::Configuration(format!(
            "{} would deploy {} baking for {bakes} minutes (with the service's own settings), but TimeoutMinutes is {minutes}: make TimeoutMinutes longer, or crossdeploy stops the deployment during its bake; nothing was changed",
            s.describe(),
            config.strategy().map(|x| x.as_str()).unwrap_or("ROLLING")
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::types::{AdvancedConfiguration, DeploymentCircuitBreaker, LoadBalancer};

    fn sref<'a>(ecs: &'a aws_sdk_ecs::Client) -> ServiceRef<'a> {
        ServiceRef { ecs, account: "222222222222", cluster: "prod", service: "web", deployment: "d", session: None }
    }

    fn client() -> aws_sdk_ecs::Client {
        let config = aws_sdk_ecs::Config::builder()
            .behavior_version_latest()
            .region(aws_sdk_ecs::config::Region::new("us-east-1"))
            .build();
        aws_sdk_ecs::Client::from_conf(config)
    }

    fn asked(strategy: &str) -> Asked<'static> {
        Asked { strategy: Some(strategy.parse().unwrap()), bake_time_minutes: None, ecs_alarms: &[] }
    }

    #[test]
    fn a_traffic_shifting_strategy_needs_a_load_balancer_with_advanced_configuration_or_service_connect() {
        let ecs = client();
        let s = sref(&ecs);
        let bare = Service::builder().build();
        let e = check(&s, &bare, &asked("BlueGreen")).unwrap_err().to_string();
        assert!(e.contains("cannot deploy BlueGreen: it has no load balancer and no Service Connect"), "{e}");
        assert!(check(&s, &bare, &asked("Rolling")).is_ok());

        let half = Service::builder()
            .load_balancers(
                LoadBalancer::builder()
                    .target_group_arn("tg-blue")
                    .advanced_configuration(
                        AdvancedConfiguration::builder().alternate_target_group_arn("tg-green").build(),
                    )
                    .build(),
            )
            .build();
        let e = check(&s, &half, &asked("Canary10Percent5Minutes")).unwrap_err().to_string();
        assert!(
            e.contains("target group tg-blue has no advancedConfiguration.productionListenerRule, advancedConfiguration.roleArn"),
            "{e}"
        );
        let whole = Service::builder()
            .load_balancers(
                LoadBalancer::builder()
                    .target_group_arn("tg-blue")
                    .advanced_configuration(
                        AdvancedConfiguration::builder()
                            .alternate_target_group_arn("tg-green")
                            .production_listener_rule("rule")
                            .role_arn("role")
                            .build(),
                    )
                    .build(),
            )
            .build();
        assert!(check(&s, &whole, &asked("Linear20PercentEvery1Minute")).is_ok());

        let bake = Asked { strategy: None, bake_time_minutes: Some(5), ecs_alarms: &[] };
        let e = check(&s, &bare, &bake).unwrap_err().to_string();
        assert!(e.contains("BakeTimeMinutes is given, but service web in cluster prod of account 222222222222 deploys with the rolling strategy"), "{e}");
    }

    #[test]
    fn the_bakes_count_the_service_own_settings_and_blue_green_needs_a_bake_time() {
        let ecs = client();
        let s = sref(&ecs);
        let minutes = |m: u64| std::time::Duration::from_secs(m * 60);
        let service = |c: DeploymentConfiguration| Service::builder().deployment_configuration(c).build();
        // The service's own 60-minute bake with BlueGreen asked: over a 30-minute timeout.
        let own = DeploymentConfiguration::builder().bake_time_in_minutes(60).build();
        let next = configuration(&service(own), &asked("BlueGreen")).unwrap().unwrap();
        assert_eq!(bake_minutes(&next), 60);
        let e = check_bakes(&s, Some(&next), minutes(30)).unwrap_err().to_string();
        assert!(e.contains("baking for 60 minutes (with the service's own settings), but TimeoutMinutes is 30"), "{e}");
        assert!(check_bakes(&s, Some(&next), minutes(61)).is_ok());
        // Blue/green with no bake time at all: ECS requires one.
        let next = configuration(&Service::builder().build(), &asked("BlueGreen")).unwrap().unwrap();
        let e = check_bakes(&s, Some(&next), minutes(30)).unwrap_err().to_string();
        assert!(e.contains("no bake time, which ECS requires"), "{e}");
        // ECS's defaults where absent: linear 10% every 6 minutes is 9 steps of 6.
        let linear = DeploymentConfiguration::builder().strategy(DeploymentStrategy::Linear).build();
        assert_eq!(bake_minutes(&linear), 54);
        let linear =
            configuration(&Service::builder().build(), &asked("Linear25PercentEvery2Minutes")).unwrap().unwrap();
        assert_eq!(bake_minutes(&linear), 6);
        assert!(check_bakes(&s, None, minutes(1)).is_ok(), "a service with no configuration deploys rolling");
    }

    #[test]
    fn the_configuration_keeps_what_the_service_has_and_sets_what_is_asked() {
        let current = DeploymentConfiguration::builder()
            .maximum_percent(150)
            .minimum_healthy_percent(50)
            .deployment_circuit_breaker(DeploymentCircuitBreaker::builder().enable(true).rollback(true).build())
            .build();
        let service = Service::builder().deployment_configuration(current.clone()).build();
        assert_eq!(
            configuration(&service, &Asked { strategy: None, bake_time_minutes: None, ecs_alarms: &[] }).unwrap(),
            None
        );
        let alarms = vec!["web-5xx".to_owned()];
        let asked = Asked {
            strategy: Some("Canary10Percent5Minutes".parse().unwrap()),
            bake_time_minutes: Some(3),
            ecs_alarms: &alarms,
        };
        let next = configuration(&service, &asked).unwrap().unwrap();
        assert_eq!((next.maximum_percent, next.minimum_healthy_percent), (Some(150), Some(50)));
        assert_eq!(next.deployment_circuit_breaker, current.deployment_circuit_breaker);
        assert_eq!(next.strategy, Some(DeploymentStrategy::Canary));
        let canary = next.canary_configuration.unwrap();
        assert_eq!((canary.canary_percent, canary.canary_bake_time_in_minutes), (Some(10.0), Some(5)));
        assert_eq!(next.bake_time_in_minutes, Some(3));
        let a = next.alarms.unwrap();
        assert_eq!((a.alarm_names, a.enable, a.rollback), (alarms.clone(), true, true));
        // Asked again of a service that has it: nothing to change.
        let service =
            Service::builder().deployment_configuration(configuration(&service, &asked).unwrap().unwrap()).build();
        assert_eq!(configuration(&service, &asked).unwrap(), None);
    }
}

//! Traffic shifting: the steps of a strategy (pure), and moving the alias through them with the
//! alarms checked all along.

use crossdeploy_protocol::DeploymentStrategy;
use std::time::Duration;

/// One step: `percent` of the alias's traffic on the new version, held for `bake` while the
/// alarms are watched. After the last step the alias points wholly at the new version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub percent: u8,
    pub bake: Duration,
}

/// The steps before the final move: none for AllAtOnce; one for a canary; `percent`,
/// `2 × percent`... below 100 for linear.
pub fn schedule(strategy: DeploymentStrategy) -> Vec<Step> {
    let minutes = |m: u32| Duration::from_secs(u64::from(m) * 60);
    match strategy {
        DeploymentStrategy::AllAtOnce => Vec::new(),
        DeploymentStrategy::Canary { percent, minutes: m } => vec![Step { percent, bake: minutes(m) }],
        DeploymentStrategy::Linear { percent, minutes: m } => (1u32..)
            .map(|i| i * u32::from(percent))
            .take_while(|p| *p < 100)
            .map(|p| Step { percent: p as u8, bake: minutes(m) })
            .collect(),
    }
}

/// The weight Lambda takes for `percent` (a fraction, 0.0 to 1.0).
pub fn weight(percent: u8) -> f64 {
    f64::from(percent.min(100)) / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_canary_is_one_step_then_everything() {
        let s = schedule("Canary10Percent5Minutes".parse().unwrap());
        assert_eq!(s, vec![Step { percent: 10, bake: Duration::from_secs(300) }]);
    }

    #[test]
    fn linear_steps_up_by_its_percentage_below_one_hundred() {
        let s = schedule("Linear10PercentEvery1Minute".parse().unwrap());
        assert_eq!(s.iter().map(|s| s.percent).collect::<Vec<_>>(), vec![10, 20, 30, 40, 50, 60, 70, 80, 90]);
        assert!(s.iter().all(|s| s.bake == Duration::from_secs(60)));
        let s = schedule("Linear30PercentEvery10Minutes".parse().unwrap());
        assert_eq!(s.iter().map(|s| s.percent).collect::<Vec<_>>(), vec![30, 60, 90]);
        assert_eq!(schedule("Linear50PercentEvery2Minutes".parse().unwrap()).len(), 1);
        assert_eq!(schedule("Linear99PercentEvery2Minutes".parse().unwrap()).len(), 1);
    }

    #[test]
    fn all_at_once_has_no_steps() {
        assert!(schedule(DeploymentStrategy::AllAtOnce).is_empty());
        assert_eq!(weight(10), 0.1);
    }
}

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// How traffic moves to a new Lambda version, with CodeDeploy's names:
/// `AllAtOnce`, `Canary<N>Percent<M>Minutes`, `Linear<N>PercentEvery<M>Minute(s)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeploymentStrategy {
    #[default]
    AllAtOnce,
    /// `percent` of the traffic for `minutes`, then all of it.
    Canary { percent: u8, minutes: u32 },
    /// `percent` more of the traffic every `minutes`.
    Linear { percent: u8, minutes: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a deployment strategy ({why}); expected AllAtOnce, Canary<N>Percent<M>Minutes (e.g. Canary10Percent5Minutes) or Linear<N>PercentEvery<M>Minute(s) (e.g. Linear10PercentEvery1Minute)")]
pub struct StrategyError {
    pub value: String,
    pub why: &'static str,
}

fn number<T: FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl FromStr for DeploymentStrategy {
    type Err = StrategyError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let err = |why| StrategyError { value: value.to_owned(), why };
        if value == "AllAtOnce" {
            return Ok(DeploymentStrategy::AllAtOnce);
        }
        let (percent, minutes, linear) = if let Some(rest) = value.strip_prefix("Canary") {
            let (p, m) = rest.split_once("Percent").ok_or_else(|| err("no `Percent`"))?;
            let m = m.strip_suffix("Minutes").ok_or_else(|| err("no `Minutes` at the end"))?;
            (p, m, false)
        } else if let Some(rest) = value.strip_prefix("Linear") {
            let (p, m) = rest.split_once("PercentEvery").ok_or_else(|| err("no `PercentEvery`"))?;
            let m = m
                .strip_suffix("Minutes")
                .or_else(|| m.strip_suffix("Minute"))
                .ok_or_else(|| err("no `Minute` or `Minutes` at the end"))?;
            (p, m, true)
        } else {
            return Err(err("unknown name"));
        };
        let percent: u8 = number(percent).ok_or_else(|| err("the percentage is not a number"))?;
        let minutes: u32 = number(minutes).ok_or_else(|| err("the minutes are not a number"))?;
        if !(1..=99).contains(&percent) {
            return Err(err("the percentage must be 1 to 99"));
        }
        if !(1..=2880).contains(&minutes) {
            return Err(err("the minutes must be 1 to 2880"));
        }
        Ok(if linear {
            DeploymentStrategy::Linear { percent, minutes }
        } else {
            DeploymentStrategy::Canary { percent, minutes }
        })
    }
}

impl DeploymentStrategy {
    /// How long traffic bakes before it all moves, in minutes: a canary's wait, or a linear
    /// strategy's steps below 100% times its interval.
    pub fn total_bake_minutes(&self) -> u32 {
        match *self {
            DeploymentStrategy::AllAtOnce => 0,
            DeploymentStrategy::Canary { minutes, .. } => minutes,
            DeploymentStrategy::Linear { percent, minutes } => u32::from(99 / percent.max(1)) * minutes,
        }
    }
}

impl fmt::Display for DeploymentStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeploymentStrategy::AllAtOnce => f.write_str("AllAtOnce"),
            DeploymentStrategy::Canary { percent, minutes } => {
                write!(f, "Canary{percent}Percent{minutes}Minutes")
            }
            DeploymentStrategy::Linear { percent, minutes: 1 } => {
                write!(f, "Linear{percent}PercentEvery1Minute")
            }
            DeploymentStrategy::Linear { percent, minutes } => {
                write!(f, "Linear{percent}PercentEvery{minutes}Minutes")
            }
        }
    }
}

impl Serialize for DeploymentStrategy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeploymentStrategy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How ECS moves a service to a new revision (`deploymentConfiguration.strategy`), with the names
/// crossdeploy uses for Lambda: `Rolling`, `BlueGreen`, `Canary<N>Percent<M>Minutes`,
/// `Linear<N>PercentEvery<M>Minute(s)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcsStrategy {
    /// ECS's rolling update: new tasks replace old ones, no traffic shifting.
    Rolling,
    /// A new (green) revision beside the old (blue) one, then all production traffic at once.
    BlueGreen,
    /// `percent` of the production traffic for `minutes`, then the rest.
    Canary { percent: u8, minutes: u32 },
    /// `percent` more of the production traffic every `minutes`.
    Linear { percent: u8, minutes: u32 },
}

/// The longest wait ECS takes for a canary's or a linear step's bake, and for `bakeTimeInMinutes`.
pub const ECS_MAX_BAKE_MINUTES: u32 = 1440;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not an ECS deployment strategy ({why}); expected Rolling, BlueGreen, Canary<N>Percent<M>Minutes (e.g. Canary10Percent5Minutes) or Linear<N>PercentEvery<M>Minute(s) (e.g. Linear20PercentEvery2Minutes)")]
pub struct EcsStrategyError {
    pub value: String,
    pub why: String,
}

impl FromStr for EcsStrategy {
    type Err = EcsStrategyError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let err = |why: &str| EcsStrategyError { value: value.to_owned(), why: why.to_owned() };
        match value {
            "Rolling" => return Ok(EcsStrategy::Rolling),
            "BlueGreen" => return Ok(EcsStrategy::BlueGreen),
            "AllAtOnce" => {
                return Err(err("AllAtOnce is a Lambda strategy; for ECS, BlueGreen shifts all traffic at once"))
            }
            _ => {}
        }
        let shift: DeploymentStrategy = value.parse().map_err(|e: StrategyError| err(e.why))?;
        match shift {
            DeploymentStrategy::AllAtOnce => Err(err("unknown name")),
            DeploymentStrategy::Canary { minutes, .. } | DeploymentStrategy::Linear { minutes, .. }
                if minutes > ECS_MAX_BAKE_MINUTES =>
            {
                Err(err("ECS bakes a canary or a linear step for at most 1440 minutes"))
            }
            DeploymentStrategy::Canary { percent, minutes } => Ok(EcsStrategy::Canary { percent, minutes }),
            // ECS's stepPercent is 3.0 to 100.0.
            DeploymentStrategy::Linear { percent, .. } if percent < 3 => {
                Err(err("ECS shifts at least 3 percent in a linear step"))
            }
            DeploymentStrategy::Linear { percent, minutes } => Ok(EcsStrategy::Linear { percent, minutes }),
        }
    }
}

impl EcsStrategy {
    /// Whether ECS shifts production traffic between two revisions (a load balancer or Service
    /// Connect carries it).
    pub fn shifts_traffic(&self) -> bool {
        !matches!(self, EcsStrategy::Rolling)
    }

    /// ECS's name for it (`deploymentConfiguration.strategy`).
    pub fn ecs_name(&self) -> &'static str {
        match self {
            EcsStrategy::Rolling => "ROLLING",
            EcsStrategy::BlueGreen => "BLUE_GREEN",
            EcsStrategy::Canary { .. } => "CANARY",
            EcsStrategy::Linear { .. } => "LINEAR",
        }
    }

    /// How long traffic bakes before it all moves, in minutes (as [`DeploymentStrategy`]).
    pub fn shift_minutes(&self) -> u32 {
        match *self {
            EcsStrategy::Rolling | EcsStrategy::BlueGreen => 0,
            EcsStrategy::Canary { percent, minutes } => {
                DeploymentStrategy::Canary { percent, minutes }.total_bake_minutes()
            }
            EcsStrategy::Linear { percent, minutes } => {
                DeploymentStrategy::Linear { percent, minutes }.total_bake_minutes()
            }
        }
    }
}

impl fmt::Display for EcsStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EcsStrategy::Rolling => f.write_str("Rolling"),
            EcsStrategy::BlueGreen => f.write_str("BlueGreen"),
            EcsStrategy::Canary { percent, minutes } => DeploymentStrategy::Canary { percent, minutes }.fmt(f),
            EcsStrategy::Linear { percent, minutes } => DeploymentStrategy::Linear { percent, minutes }.fmt(f),
        }
    }
}

impl Serialize for EcsStrategy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EcsStrategy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeploymentStrategy::*;

    #[test]
    fn codedeploy_names_parse_and_print_back() {
        for (name, s) in [
            ("AllAtOnce", AllAtOnce),
            ("Canary10Percent5Minutes", Canary { percent: 10, minutes: 5 }),
            ("Canary10Percent30Minutes", Canary { percent: 10, minutes: 30 }),
            ("Linear10PercentEvery1Minute", Linear { percent: 10, minutes: 1 }),
            ("Linear10PercentEvery10Minutes", Linear { percent: 10, minutes: 10 }),
        ] {
            assert_eq!(name.parse::<DeploymentStrategy>(), Ok(s), "{name}");
            assert_eq!(s.to_string(), name);
        }
        assert_eq!("Linear20PercentEvery1Minutes".parse(), Ok(Linear { percent: 20, minutes: 1 }));
    }

    #[test]
    fn the_total_bake_counts_every_step_below_one_hundred_percent() {
        assert_eq!(AllAtOnce.total_bake_minutes(), 0);
        assert_eq!(Canary { percent: 10, minutes: 30 }.total_bake_minutes(), 30);
        assert_eq!(Linear { percent: 10, minutes: 1 }.total_bake_minutes(), 9);
        assert_eq!(Linear { percent: 30, minutes: 10 }.total_bake_minutes(), 30);
        assert_eq!(Linear { percent: 33, minutes: 2 }.total_bake_minutes(), 6);
        assert_eq!(Linear { percent: 99, minutes: 5 }.total_bake_minutes(), 5);
    }

    #[test]
    fn unknown_strategies_are_refused_naming_the_value() {
        for bad in [
            "",
            "allatonce",
            "Canary",
            "CanaryTenPercent5Minutes",
            "Canary10Percent5",
            "Canary0Percent5Minutes",
            "Canary100Percent5Minutes",
            "Canary10Percent0Minutes",
            "Linear10Percent1Minute",
            "Linear-10PercentEvery1Minute",
            "BlueGreen",
        ] {
            let e = bad.parse::<DeploymentStrategy>().unwrap_err();
            assert!(e.to_string().contains(&format!("`{bad}`")), "{e}");
        }
    }

    #[test]
    fn ecs_strategies_parse_print_back_and_keep_to_ecs_ranges() {
        use EcsStrategy as E;
        for (name, s) in [
            ("Rolling", E::Rolling),
            ("BlueGreen", E::BlueGreen),
            ("Canary10Percent5Minutes", E::Canary { percent: 10, minutes: 5 }),
            ("Linear20PercentEvery1Minute", E::Linear { percent: 20, minutes: 1 }),
            ("Linear25PercentEvery3Minutes", E::Linear { percent: 25, minutes: 3 }),
        ] {
            assert_eq!(name.parse::<E>(), Ok(s), "{name}");
            assert_eq!(s.to_string(), name);
        }
        assert_eq!(E::Linear { percent: 25, minutes: 3 }.shift_minutes(), 9);
        assert_eq!(E::Canary { percent: 10, minutes: 5 }.shift_minutes(), 5);
        for bad in ["", "rolling", "AllAtOnce", "Linear2PercentEvery1Minute", "Canary10Percent1441Minutes", "Blue"] {
            let e = bad.parse::<E>().unwrap_err();
            assert!(e.to_string().contains(&format!("`{bad}`")), "{e}");
        }
        assert!("Linear2PercentEvery1Minute".parse::<E>().unwrap_err().why.contains("at least 3 percent"));
    }
}

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A validated IAM role ARN: `arn:<partition>:iam::<12-digit account>:role/<path/><name>`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoleArn {
    arn: String,
    account_start: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not an IAM role ARN ({why}); expected arn:aws:iam::<12-digit account id>:role/<name>")]
pub struct RoleArnError {
    pub value: String,
    pub why: &'static str,
}

impl RoleArn {
    pub fn as_str(&self) -> &str {
        &self.arn
    }

    pub fn account_id(&self) -> &str {
        &self.arn[self.account_start..self.account_start + 12]
    }

    /// The role's name, without its path.
    pub fn name(&self) -> &str {
        self.arn.rsplit('/').next().unwrap_or_default()
    }

    /// The partition (`aws`, `aws-cn`, `aws-us-gov`).
    pub fn partition(&self) -> &str {
        self.arn.split(':').nth(1).unwrap_or_default()
    }
}

impl FromStr for RoleArn {
    type Err = RoleArnError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let err = |why| RoleArnError { value: value.to_owned(), why };
        let parts: Vec<&str> = value.split(':').collect();
        if parts.len() != 6 || parts[0] != "arn" {
            return Err(err("not six colon-separated parts starting with `arn`"));
        }
        if !matches!(parts[1], "aws" | "aws-cn" | "aws-us-gov" | "aws-iso" | "aws-iso-b") {
            return Err(err("unknown partition"));
        }
        if parts[2] != "iam" || !parts[3].is_empty() {
            return Err(err("not an IAM ARN"));
        }
        if parts[4].len() != 12 || !parts[4].bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("the account id is not 12 digits"));
        }
        let Some(path_and_name) = parts[5].strip_prefix("role/") else {
            return Err(err("not a role"));
        };
        let name = path_and_name.rsplit('/').next().unwrap_or_default();
        let name_ok = (1..=64).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
        if !name_ok {
            return Err(err("the role name is empty, too long or has characters IAM does not allow"));
        }
        if value.len() > 2048 {
            return Err(err("longer than 2048 characters"));
        }
        let account_start = parts[..4].iter().map(|p| p.len() + 1).sum();
        Ok(RoleArn { arn: value.to_owned(), account_start })
    }
}

impl fmt::Display for RoleArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arn)
    }
}

impl fmt::Debug for RoleArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoleArn({})", self.arn)
    }
}

impl Serialize for RoleArn {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.arn)
    }
}

impl<'de> Deserialize<'de> for RoleArn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_arn_is_split_into_account_and_name() {
        let arn: RoleArn = "arn:aws:iam::222222222222:role/deploy/crossdeploy-target".parse().unwrap();
        assert_eq!(arn.account_id(), "222222222222");
        assert_eq!(arn.name(), "crossdeploy-target");
        assert_eq!(arn.partition(), "aws");
    }

    #[test]
    fn malformed_role_arns_are_refused_with_the_reason() {
        for (bad, why) in [
            ("crossdeploy-target", "six"),
            ("arn:aws:iam::22222222222:role/x", "12 digits"),
            ("arn:aws:iam::22222222222a:role/x", "12 digits"),
            ("arn:aws:s3:::bucket/x:y", "IAM"),
            ("arn:aws:iam::222222222222:user/x", "not a role"),
            ("arn:aws:iam::222222222222:role/", "role name"),
            ("arn:aws:iam::222222222222:role/a b", "role name"),
            ("arn:azure:iam::222222222222:role/x", "partition"),
        ] {
            let e = bad.parse::<RoleArn>().unwrap_err();
            assert!(e.to_string().contains(why), "{bad}: {e}");
            assert!(e.to_string().contains(bad), "{bad}: {e}");
        }
    }
}

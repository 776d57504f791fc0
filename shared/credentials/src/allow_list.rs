use crossdeploy_protocol::RoleArn;

/// The role ARNs crossdeploy may assume. Deny by default: an empty list allows nothing.
///
/// Entries are comma-separated ARNs; `*` matches any run of characters inside one segment
/// (it never crosses `:` or `/`), so `arn:aws:iam::*:role/crossdeploy-target` allows that role
/// name in every account, and a bare `*` allows nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    patterns: Vec<String>,
}

impl AllowList {
    pub fn parse(value: &str) -> Self {
        Self { patterns: value.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned).collect() }
    }

    /// From `CROSSDEPLOY_ALLOWED_TARGET_ROLES`; unset is empty.
    pub fn from_env() -> Self {
        Self::parse(&std::env::var(crate::ALLOWED_TARGET_ROLES_ENV).unwrap_or_default())
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub fn allows(&self, role: &RoleArn) -> bool {
        self.patterns.iter().any(|p| glob_match(p.as_bytes(), role.as_str().as_bytes()))
    }
}

/// `*` matches any run of bytes other than `:` and `/`; everything else matches itself.
/// Without recursion (a long pattern or ARN cannot exhaust the stack): the separators of both
/// must be the same, in the same order, and each segment match its pattern's segment.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let is_sep = |b: &u8| *b == b':' || *b == b'/';
    let seps = |s: &[u8]| s.iter().copied().filter(is_sep).collect::<Vec<u8>>();
    if seps(pattern) != seps(text) {
        return false;
    }
    pattern.split(is_sep).zip(text.split(is_sep)).all(|(p, t)| segment_match(p, t))
}

/// Wildcard matching of one segment (`*`: any run of bytes), iterative with one backtrack point.
fn segment_match(p: &[u8], t: &[u8]) -> bool {
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((s, mark)) = star {
            pi = s + 1;
            ti = mark + 1;
            star = Some((s, mark + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|b| *b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arn(s: &str) -> RoleArn {
        s.parse().unwrap()
    }

    #[test]
    fn unset_or_empty_allows_nothing() {
        let role = arn("arn:aws:iam::222222222222:role/crossdeploy-target");
        assert!(!AllowList::parse("").allows(&role));
        assert!(!AllowList::parse(" , ,").allows(&role));
        assert!(!AllowList::default().allows(&role));
    }

    #[test]
    fn exact_entries_allow_exactly_that_role() {
        let list =
            AllowList::parse("arn:aws:iam::222222222222:role/crossdeploy-target, arn:aws:iam::333333333333:role/other");
        assert!(list.allows(&arn("arn:aws:iam::222222222222:role/crossdeploy-target")));
        assert!(list.allows(&arn("arn:aws:iam::333333333333:role/other")));
        assert!(!list.allows(&arn("arn:aws:iam::333333333333:role/crossdeploy-target")));
        assert!(!list.allows(&arn("arn:aws:iam::222222222222:role/crossdeploy-target2")));
    }

    #[test]
    fn a_star_matches_within_one_segment_only() {
        let list = AllowList::parse("arn:aws:iam::*:role/crossdeploy-*");
        assert!(list.allows(&arn("arn:aws:iam::222222222222:role/crossdeploy-target")));
        assert!(list.allows(&arn("arn:aws:iam::444444444444:role/crossdeploy-")));
        assert!(!list.allows(&arn("arn:aws:iam::222222222222:role/admin")));
        // `*` does not cross a `/`: a role under a path is not the same role name.
        assert!(!list.allows(&arn("arn:aws:iam::222222222222:role/crossdeploy-x/admin")));
        // A bare `*` cannot allow everything.
        assert!(!AllowList::parse("*").allows(&arn("arn:aws:iam::222222222222:role/x")));
        assert!(!AllowList::parse("arn:aws:iam::*").allows(&arn("arn:aws:iam::222222222222:role/x")));
        assert!(AllowList::parse("arn:aws:iam::2*2:role/*x*").allows(&arn("arn:aws:iam::222222222222:role/axb")));
        // A pattern of any length is matched without recursion.
        let long = format!("arn:aws:iam::222222222222:role/{}", "*a".repeat(200_000));
        assert!(!AllowList::parse(&long).allows(&arn("arn:aws:iam::222222222222:role/b")));
        let path = AllowList::parse("arn:aws:iam::222222222222:role/*/deployer");
        assert!(path.allows(&arn("arn:aws:iam::222222222222:role/team-a/deployer")));
        assert!(!path.allows(&arn("arn:aws:iam::222222222222:role/a/b/deployer")));
    }
}

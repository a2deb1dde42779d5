//! IAM-style identity policies: statements that Allow or Deny actions on resources, with `*` and
//! `?` wildcards. An explicit Deny wins over any Allow; with no matching Allow the answer is
//! Deny (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html).
//! `Condition` blocks are refused when the policy is loaded rather than silently ignored.

use serde::Deserialize;

/// A policy document as IAM writes it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Policy {
    #[serde(default)]
    pub version: Option<String>,
    #[serde(deserialize_with = "one_or_many")]
    pub statement: Vec<Statement>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// One statement. `Action`/`NotAction` and `Resource`/`NotResource` are each exactly one of the pair.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Statement {
    #[serde(default)]
    pub sid: Option<String>,
    pub effect: Effect,
    #[serde(default, deserialize_with = "one_or_many_opt")]
    pub action: Option<Vec<String>>,
    #[serde(default, deserialize_with = "one_or_many_opt")]
    pub not_action: Option<Vec<String>>,
    #[serde(default, deserialize_with = "one_or_many_opt")]
    pub resource: Option<Vec<String>>,
    #[serde(default, deserialize_with = "one_or_many_opt")]
    pub not_resource: Option<Vec<String>>,
}

/// What a policy says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// No statement allows it.
    ImplicitlyDenied,
    /// A Deny statement matches.
    ExplicitlyDenied,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("the policy is not valid JSON for an IAM policy: {0}")]
    Syntax(String),
    #[error("statement {index} must have exactly one of Action and NotAction, and one of Resource and NotResource")]
    Incomplete { index: usize },
}

impl Policy {
    /// Parses and checks a policy document.
    pub fn parse(value: serde_json::Value) -> Result<Self, PolicyError> {
        let policy: Policy = serde_json::from_value(value).map_err(|e| PolicyError::Syntax(e.to_string()))?;
        for (index, statement) in policy.statement.iter().enumerate() {
            let actions = statement.action.is_some() != statement.not_action.is_some();
            let resources = statement.resource.is_some() != statement.not_resource.is_some();
            if !actions || !resources {
                return Err(PolicyError::Incomplete { index });
            }
        }
        Ok(policy)
    }

    /// Everything, everywhere: what `framelog keys add` grants when no policy is given.
    pub fn allow_all_json() -> serde_json::Value {
        serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
    }

    /// Evaluates `action` (e.g. `kinesis:PutRecord`) on `resource` (an ARN, or `*` for calls that
    /// name no resource).
    pub fn decide(&self, action: &str, resource: &str) -> Decision {
        let mut allowed = false;
        for statement in &self.statement {
            if statement.matches(action, resource) {
                match statement.effect {
                    Effect::Deny => return Decision::ExplicitlyDenied,
                    Effect::Allow => allowed = true,
                }
            }
        }
        if allowed { Decision::Allowed } else { Decision::ImplicitlyDenied }
    }
}

impl Statement {
    fn matches(&self, action: &str, resource: &str) -> bool {
        // Action names are case-insensitive in IAM; ARNs are not.
        let action_hit = |patterns: &Vec<String>| patterns.iter().any(|p| wildcard_match(p, action, true));
        let resource_hit = |patterns: &Vec<String>| patterns.iter().any(|p| wildcard_match(p, resource, false));
        let action_ok = match (&self.action, &self.not_action) {
            (Some(patterns), _) => action_hit(patterns),
            (None, Some(patterns)) => !action_hit(patterns),
            (None, None) => false,
        };
        let resource_ok = match (&self.resource, &self.not_resource) {
            (Some(patterns), _) => resource_hit(patterns),
            (None, Some(patterns)) => !resource_hit(patterns),
            (None, None) => false,
        };
        action_ok && resource_ok
    }
}

/// `*` matches any run of characters (also none, also `:` and `/`), `?` exactly one.
pub fn wildcard_match(pattern: &str, text: &str, ignore_case: bool) -> bool {
    let same = |p: char, t: char| if ignore_case { p.eq_ignore_ascii_case(&t) } else { p == t };
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    // Greedy matching with one backtrack point: linear in practice, never exponential.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || (pattern[p] != '*' && same(pattern[p], text[t]))) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

fn one_or_many<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        One(T),
        Many(Vec<T>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}

fn one_or_many_opt<'de, D>(deserializer: D) -> Result<Option<Vec<String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    one_or_many(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(value: serde_json::Value) -> Policy {
        Policy::parse(value).expect("valid policy")
    }

    const CAM: &str = "arn:aws:kinesisvideo:us-east-1:000000000000:stream/cam-1/1700000000000";

    #[test]
    fn wildcards_match_runs_and_single_characters() {
        assert!(wildcard_match("kinesisvideo:Get*", "kinesisvideo:GetMedia", true));
        assert!(wildcard_match("kinesisvideo:get*", "kinesisvideo:GetMedia", true));
        assert!(!wildcard_match("kinesisvideo:Get*", "kinesisvideo:PutMedia", true));
        assert!(wildcard_match("arn:aws:kinesisvideo:*:*:stream/cam-?/*", CAM, false));
        assert!(!wildcard_match("arn:aws:kinesisvideo:*:*:stream/cam-??/*", CAM, false));
        assert!(wildcard_match("*", "", false));
        assert!(!wildcard_match("a", "", false));
        assert!(wildcard_match("a*b*c", "axxbyyc", false));
        assert!(!wildcard_match("a*b*c", "axxbyy", false));
        assert!(!wildcard_match("ARN:*", "arn:x", false));
    }

    #[test]
    fn an_explicit_deny_wins_and_no_allow_means_denied() {
        let p = policy(json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["kinesisvideo:*"], "Resource": "*"},
            {"Effect": "Deny", "Action": "kinesisvideo:Delete*", "Resource": "arn:aws:kinesisvideo:*:*:stream/cam-*/*"}
        ]}));
        assert_eq!(p.decide("kinesisvideo:GetMedia", CAM), Decision::Allowed);
        assert_eq!(p.decide("kinesisvideo:DeleteStream", CAM), Decision::ExplicitlyDenied);
        assert_eq!(p.decide("kinesis:PutRecord", "arn:aws:kinesis:us-east-1:0:stream/x"), Decision::ImplicitlyDenied);
    }

    #[test]
    fn not_action_and_not_resource_invert_the_match() {
        let p = policy(
            json!({"Statement": {"Effect": "Allow", "NotAction": "kinesis:Delete*", "NotResource": "arn:aws:kinesis:*:*:stream/secret"}}),
        );
        assert_eq!(p.decide("kinesis:PutRecord", "arn:aws:kinesis:r:a:stream/open"), Decision::Allowed);
        assert_eq!(p.decide("kinesis:DeleteStream", "arn:aws:kinesis:r:a:stream/open"), Decision::ImplicitlyDenied);
        assert_eq!(p.decide("kinesis:PutRecord", "arn:aws:kinesis:*:*:stream/secret"), Decision::ImplicitlyDenied);
    }

    #[test]
    fn malformed_or_conditional_policies_are_refused() {
        assert!(matches!(
            Policy::parse(json!({"Statement": [{"Effect": "Allow", "Action": "*"}]})),
            Err(PolicyError::Incomplete { index: 0 })
        ));
        assert!(Policy::parse(json!({"Statement": [{"Effect": "Maybe", "Action": "*", "Resource": "*"}]})).is_err());
        let conditional = json!({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*",
            "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}]});
        assert!(matches!(Policy::parse(conditional), Err(PolicyError::Syntax(_))));
    }
}

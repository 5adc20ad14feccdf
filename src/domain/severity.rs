//! Severity suggestions from the policy's rules, always with the reason.

use serde::{Deserialize, Serialize};

use super::evidence::VerdictKind;
use super::ids::{Priority, Severity};
use super::policy::{SeverityPolicy, SeverityRule};

/// What the rules say about an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assessment {
    pub severity: Severity,
    pub reason: String,
}

/// The facts severity rules look at.
#[derive(Debug, Clone, Copy)]
pub struct SeverityInput<'a> {
    pub priority: Option<Priority>,
    pub tags: &'a [String],
    pub team: &'a str,
    /// What the evidence says, once it arrived.
    pub evidence: Option<EvidenceFacts>,
}

/// The parts of the evidence severity rules can use.
#[derive(Debug, Clone, Copy)]
pub struct EvidenceFacts {
    pub verdict: VerdictKind,
    /// Global error ratio in [0, 1].
    pub error_ratio: f64,
}

/// The first rule that matches decides; otherwise the policy's default applies.
pub fn assess(policy: &SeverityPolicy, input: SeverityInput<'_>) -> Assessment {
    for (i, rule) in policy.rules.iter().enumerate() {
        if matches(rule, input) {
            let reason = rule.reason.clone().unwrap_or_else(|| describe(rule, input, i));
            return Assessment { severity: rule.severity, reason };
        }
    }
    Assessment {
        severity: policy.default,
        reason: format!("no severity rule matched; the default is {}", policy.default),
    }
}

fn matches(rule: &SeverityRule, input: SeverityInput<'_>) -> bool {
    let priority_ok = rule.priority.is_empty() || input.priority.is_some_and(|p| rule.priority.contains(&p));
    let tags_ok = rule.tags.iter().all(|g| input.tags.iter().any(|t| g.is_match(t)));
    let team_ok = rule.team.is_empty() || rule.team.iter().any(|t| t.eq_ignore_ascii_case(input.team));
    let verdict_ok = rule.verdict.is_empty() || input.evidence.is_some_and(|e| rule.verdict.contains(&e.verdict));
    let ratio_ok = rule.min_error_ratio.is_none_or(|min| input.evidence.is_some_and(|e| e.error_ratio >= min));
    priority_ok && tags_ok && team_ok && verdict_ok && ratio_ok
}

/// A reason built from the conditions that matched, e.g. `priority P1, tag env:prod (rule 2)`.
fn describe(rule: &SeverityRule, input: SeverityInput<'_>, index: usize) -> String {
    let mut parts = Vec::new();
    if let Some(p) = input.priority.filter(|_| !rule.priority.is_empty()) {
        parts.push(format!("priority {p}"));
    }
    for glob in &rule.tags {
        if let Some(tag) = input.tags.iter().find(|t| glob.is_match(t)) {
            parts.push(format!("tag {tag}"));
        }
    }
    if !rule.team.is_empty() {
        parts.push(format!("team {}", input.team));
    }
    if let Some(e) = input.evidence.filter(|_| !rule.verdict.is_empty() || rule.min_error_ratio.is_some()) {
        parts.push(format!("evidence {} at {:.1}% errors", e.verdict.name().replace('_', " "), e.error_ratio * 100.0));
    }
    if parts.is_empty() {
        parts.push("matches every alert".to_string());
    }
    format!("{} (severity rule {})", parts.join(", "), index + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::policy::TagGlob;

    fn rule(severity: Severity, priority: &[Priority], tags: &[&str], team: &[&str]) -> SeverityRule {
        SeverityRule {
            severity,
            reason: None,
            priority: priority.to_vec(),
            tags: tags.iter().map(|t| TagGlob::new(t).unwrap()).collect(),
            team: team.iter().map(|t| t.to_string()).collect(),
            verdict: Vec::new(),
            min_error_ratio: None,
        }
    }

    fn input<'a>(priority: Option<Priority>, tags: &'a [String], team: &'a str) -> SeverityInput<'a> {
        SeverityInput { priority, tags, team, evidence: None }
    }

    #[test]
    fn evidence_conditions_match_only_with_evidence() {
        let mut r = rule(Severity::Sev1, &[], &[], &[]);
        r.verdict = vec![VerdictKind::Global];
        r.min_error_ratio = Some(0.05);
        let policy = SeverityPolicy { default: Severity::Sev3, rules: vec![r] };
        assert_eq!(assess(&policy, input(None, &[], "backend")).severity, Severity::Sev3, "no evidence yet");
        let global = SeverityInput {
            evidence: Some(EvidenceFacts { verdict: VerdictKind::Global, error_ratio: 0.12 }),
            ..input(None, &[], "backend")
        };
        let a = assess(&policy, global);
        assert_eq!(a.severity, Severity::Sev1);
        assert_eq!(a.reason, "evidence global at 12.0% errors (severity rule 1)");
        let low = SeverityInput {
            evidence: Some(EvidenceFacts { verdict: VerdictKind::Global, error_ratio: 0.01 }),
            ..input(None, &[], "backend")
        };
        assert_eq!(assess(&policy, low).severity, Severity::Sev3);
    }

    #[test]
    fn first_matching_rule_wins_and_explains_itself() {
        let policy = SeverityPolicy {
            default: Severity::Sev3,
            rules: vec![
                rule(Severity::Sev1, &[Priority::P1], &["env:prod"], &[]),
                rule(Severity::Sev2, &[Priority::P1, Priority::P2], &[], &[]),
            ],
        };
        let prod = vec!["env:prod".to_string(), "service:api".to_string()];
        let a = assess(&policy, input(Some(Priority::P1), &prod, "backend"));
        assert_eq!(a.severity, Severity::Sev1);
        assert_eq!(a.reason, "priority P1, tag env:prod (severity rule 1)");

        let staging = vec!["env:staging".to_string()];
        let b = assess(&policy, input(Some(Priority::P1), &staging, "backend"));
        assert_eq!(b.severity, Severity::Sev2);
        assert_eq!(b.reason, "priority P1 (severity rule 2)");
    }

    #[test]
    fn no_match_falls_back_to_the_default_with_a_reason() {
        let policy =
            SeverityPolicy { default: Severity::Sev3, rules: vec![rule(Severity::Sev1, &[Priority::P1], &[], &[])] };
        let a = assess(&policy, input(None, &[], "backend"));
        assert_eq!(a.severity, Severity::Sev3);
        assert_eq!(a.reason, "no severity rule matched; the default is SEV3");
    }

    #[test]
    fn team_and_glob_conditions_and_custom_reason() {
        let mut r = rule(Severity::Sev2, &[], &["service:api-*"], &["Backend"]);
        r.reason = Some("customer-facing API".into());
        let policy = SeverityPolicy { default: Severity::Sev4, rules: vec![r] };
        let tags = vec!["service:api-gateway".to_string()];
        assert_eq!(assess(&policy, input(None, &tags, "backend")).reason, "customer-facing API");
        assert_eq!(assess(&policy, input(None, &tags, "frontend")).severity, Severity::Sev4);
        let other = vec!["service:web".to_string()];
        assert_eq!(assess(&policy, input(None, &other, "backend")).severity, Severity::Sev4);
    }
}

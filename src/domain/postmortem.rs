//! The postmortem draft produced on resolve: Markdown built from the incident's record.

use std::fmt::Write;

use super::followup::Ticket;
use super::incident::{Actor, EntryKind, Incident, RootCause, SeveritySetBy};
use super::messages::human_duration;

fn person(actor: &Actor) -> String {
    actor.to_string()
}

/// The postmortem draft for `incident`, in Markdown. Missing parts are marked, not invented.
pub fn postmortem_markdown(incident: &Incident) -> String {
    let mut md = String::new();
    let id = incident.id;
    let _ = writeln!(md, "# Postmortem draft: {id} · {}", super::text::escape_untrusted(&incident.title));
    let _ = writeln!(md);
    let _ = writeln!(md, "## Summary");
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "- **Severity:** {} — {}\n- **Team:** {}\n- **Status:** {}\n- **Opened:** {}",
        incident.severity,
        incident.severity_reason,
        incident.team,
        incident.status,
        incident.opened_at.format("%Y-%m-%d %H:%M:%S UTC"),
    );
    if let Some(summary) = &incident.resolution_summary {
        let _ = writeln!(md, "- **Resolution:** {summary}");
    }
    let _ = writeln!(md);

    let _ = writeln!(md, "## Impact");
    let _ = writeln!(md);
    match &incident.alerts {
        Some(a) => {
            let _ = writeln!(
                md,
                "- {} alert notification(s) from {} between {} and {}; last state {}{}.",
                a.count,
                a.source.label(),
                a.first_seen.format("%H:%M:%S UTC"),
                a.last_seen.format("%H:%M:%S UTC"),
                a.last_transition,
                if a.recovered { " (recovered)" } else { "" },
            );
            if let Some(service) = &a.service {
                let _ = writeln!(
                    md,
                    "- Service: `{service}`{}",
                    a.env.as_ref().map(|e| format!(", env `{e}`")).unwrap_or_default()
                );
            }
        }
        None => {
            let _ = writeln!(md, "- Declared by hand; no alert attached.");
        }
    }
    let evidence: Vec<_> = incident.timeline.iter().filter(|e| e.kind == EntryKind::Evidence).collect();
    for e in &evidence {
        let _ = writeln!(md, "- {} ({})", e.text, e.at.format("%H:%M UTC"));
    }
    if evidence.is_empty() {
        let _ = writeln!(md, "- _Customer impact: to be filled in._");
    }
    let _ = writeln!(md);

    let _ = writeln!(md, "## Roles");
    let _ = writeln!(md);
    let mention = |u: &Option<super::ids::UserId>| u.as_ref().map(|u| u.mention()).unwrap_or_else(|| "_none_".into());
    let _ = writeln!(md, "- **Commander:** {}", mention(&incident.commander));
    let _ = writeln!(md, "- **Investigator:** {}", mention(&incident.investigator));
    for e in incident.timeline.iter().filter(|e| e.kind == EntryKind::RoleChanged) {
        let _ = writeln!(md, "- {} — {}", e.at.format("%H:%M:%S"), e.text);
    }
    let _ = writeln!(md);

    let _ = writeln!(md, "## Time to acknowledge / mitigate / resolve");
    let _ = writeln!(md);
    let d = incident.durations();
    let show = |t: Option<chrono::TimeDelta>| t.map(human_duration).unwrap_or_else(|| "—".into());
    let _ = writeln!(md, "| acknowledge | mitigate | resolve |\n|---|---|---|");
    let acknowledge = d.to_acknowledge.map(human_duration).unwrap_or_else(|| "never".into());
    let _ = writeln!(md, "| {acknowledge} | {} | {} |", show(d.to_mitigate), show(d.to_resolve));
    let _ = writeln!(md);

    let _ = writeln!(md, "## Severity history");
    let _ = writeln!(md);
    for change in &incident.severity_history {
        let by = match &change.by {
            SeveritySetBy::Rules => "rules".to_string(),
            SeveritySetBy::Person(u) => u.mention(),
        };
        let _ = writeln!(md, "- {} — {} by {by}: {}", change.at.format("%H:%M:%S"), change.severity, change.reason);
    }
    let _ = writeln!(md);

    let _ = writeln!(md, "## Root cause");
    let _ = writeln!(md);
    match &incident.root_cause {
        RootCause::Found { text, by, at } => {
            let _ = writeln!(md, "{text}\n\n_Recorded by {} at {}._", by.mention(), at.format("%H:%M:%S UTC"));
        }
        RootCause::Unknown => {
            let _ = writeln!(
                md,
                "**MISSING** — the investigator ({}) has not recorded a root cause. Add it with `/incident rootcause {id} <text>`.",
                mention(&incident.investigator)
            );
        }
    }
    let _ = writeln!(md);

    let _ = writeln!(md, "## Follow-ups");
    let _ = writeln!(md);
    if incident.followups.is_empty() {
        let _ = writeln!(md, "- _None recorded yet: `/incident followup {id} <what to do> [@owner]`._");
    }
    for f in &incident.followups {
        let owner = f.owner.as_ref().map(|o| o.mention()).unwrap_or_else(|| "_no owner_".into());
        let ticket = match &f.ticket {
            Ticket::Untracked => "no tracker".to_string(),
            Ticket::Pending { .. } => "ticket pending".to_string(),
            Ticket::Filed(t) => format!("[{}]({})", t.key, t.url),
        };
        let done = if f.done { " · done" } else { "" };
        let _ = writeln!(
            md,
            "- [{}] **{}** {} — owner {owner} · {ticket}{done}",
            if f.done { "x" } else { " " },
            f.label(),
            super::text::escape_untrusted(f.text.trim())
        );
    }
    let _ = writeln!(md);

    let _ = writeln!(md, "## Timeline");
    let _ = writeln!(md);
    for e in &incident.timeline {
        let _ = writeln!(md, "- {} · {} · {}", e.at.format("%H:%M:%S"), person(&e.actor), e.text);
    }
    let _ = writeln!(md);

    let _ = writeln!(md, "## Open questions");
    let _ = writeln!(md);
    let mut questions = Vec::new();
    if !incident.root_cause.is_found() {
        questions.push("What was the root cause?".to_string());
    }
    match d.to_acknowledge {
        None => {
            questions.push("Nobody acknowledged it: did the escalation reach anyone, and why did no one answer?".into())
        }
        Some(t) if t > chrono::TimeDelta::minutes(15) => {
            questions.push("Why did acknowledgement take as long as it did?".to_string())
        }
        Some(_) => {}
    }
    if incident.timeline.iter().any(|e| e.kind == EntryKind::Flapping) {
        questions.push("The alert flapped: is its threshold right?".to_string());
    }
    questions.push("What would have caught this earlier?".to_string());
    if incident.followups.is_empty() {
        questions.push("Which follow-ups prevent a repeat, and who owns them?".to_string());
    } else if incident.followups.iter().any(|f| f.owner.is_none()) {
        questions.push("Who owns the follow-ups that have no owner yet?".to_string());
    }
    for q in questions {
        let _ = writeln!(md, "- {q}");
    }
    md
}

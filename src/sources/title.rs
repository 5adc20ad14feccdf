//! Datadog's notification title grammar: `[P1] [Triggered on {host:a,env:prod}] Monitor name`.

use crate::domain::alert::Transition;
use crate::domain::ids::Priority;

/// What a title says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Title {
    pub priority: Option<Priority>,
    pub transition: Option<Transition>,
    /// The alerting scope inside the transition bracket, without braces (`host:a,env:prod`).
    pub scope: Option<String>,
    /// The monitor's name: the title without the leading markers.
    pub name: String,
}

/// Reads the leading `[P<n>]` and `[<Transition>[ on {scope}]]` markers, in either order.
pub fn parse_title(title: &str) -> Title {
    let mut out = Title::default();
    let mut rest = title.trim();
    while let Some(inner_start) = rest.strip_prefix('[') {
        let Some(end) = inner_start.find(']') else { break };
        let inner = inner_start[..end].trim();
        if out.priority.is_none()
            && let Ok(p) = inner.parse::<Priority>()
        {
            out.priority = Some(p);
        } else if out.transition.is_none()
            && let Some((transition, scope)) = transition_marker(inner)
        {
            out.transition = Some(transition);
            out.scope = scope;
        } else {
            break;
        }
        rest = inner_start[end + 1..].trim_start();
    }
    out.name = rest.trim().to_string();
    if out.name.is_empty() {
        out.name = title.trim().to_string();
    }
    out
}

/// `Triggered`, `Re-Triggered on {x:y}`, `No Data on {…}`, `Recovered`, `Warn`…
fn transition_marker(inner: &str) -> Option<(Transition, Option<String>)> {
    let (head, scope) = match inner.find(" on ") {
        Some(i) => (&inner[..i], Some(inner[i + 4..].trim())),
        None => (inner, None),
    };
    let transition = Transition::parse(head)?;
    let scope = scope.map(|s| s.trim_matches(|c| c == '{' || c == '}').trim().to_string()).filter(|s| !s.is_empty());
    Some((transition, scope))
}

/// The first Datadog monitor id in a text: any `https://<site>/monitors/<id>` link.
pub fn monitor_id(text: &str) -> Option<String> {
    let mut rest = text;
    while let Some(i) = rest.find("/monitors/") {
        let before = &rest[..i];
        let after = &rest[i + "/monitors/".len()..];
        let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
        let host_is_datadog =
            before.rsplit("://").next().is_some_and(|host| host.contains("datadoghq") || host.contains("ddog-gov"));
        if !digits.is_empty() && host_is_datadog {
            return Some(digits);
        }
        rest = after;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_documented_title_shape() {
        let t = parse_title("[P1] [Triggered on {host:k3s-1,env:prod}] CPU usage is high");
        assert_eq!(t.priority, Some(Priority::P1));
        assert_eq!(t.transition, Some(Transition::Triggered));
        assert_eq!(t.scope.as_deref(), Some("host:k3s-1,env:prod"));
        assert_eq!(t.name, "CPU usage is high");

        let t = parse_title("[Re-Triggered] Disk full");
        assert_eq!(
            (t.priority, t.transition, t.scope.as_deref(), t.name.as_str()),
            (None, Some(Transition::ReTriggered), None, "Disk full")
        );

        let t = parse_title("[Recovered on {service:api}] [P3] Latency");
        assert_eq!((t.priority, t.transition), (Some(Priority::P3), Some(Transition::Recovered)));

        let t = parse_title("[P2] [Triggered on {issue.id:2df2}] [New issue] New issue to review");
        assert_eq!(t.name, "[New issue] New issue to review");
        assert_eq!(parse_title("[No Data] Heartbeat").transition, Some(Transition::NoData));
        assert_eq!(parse_title("[Warn] XYZ Dev - RDS High Write Latency").transition, Some(Transition::Warn));

        let plain = parse_title("Deploy finished");
        assert_eq!(plain, Title { name: "Deploy finished".into(), ..Title::default() });
        assert_eq!(parse_title("[P1]").name, "[P1]", "a title that is only markers keeps its text");
    }

    #[test]
    fn monitor_ids_come_from_datadog_links_only() {
        assert_eq!(monitor_id("see https://app.datadoghq.com/monitors/221164084?from_ts=1"), Some("221164084".into()));
        assert_eq!(
            monitor_id("[[Monitor Status](https://us5.datadoghq.com/monitors/8248529?group=x)]"),
            Some("8248529".into())
        );
        assert_eq!(monitor_id("https://example.com/monitors/1"), None);
        assert_eq!(monitor_id("https://app.datadoghq.eu/monitors/edit"), None);
    }
}

//! Making untrusted text safe to post in Slack.
//!
//! Slack turns `<!channel>`, `<!here>`, `<!everyone>`, `<@U…>`, `<!subteam^…>` and `<url|label>` into
//! pings and links. Text that comes from alerts must not be able to do either, so it is escaped
//! the way Slack documents (`&` `<` `>` as entities). Text people typed keeps their mentions but
//! loses broadcasts.

/// Escapes alert-sourced text: nothing in it can ping or link anyone.
pub fn escape_untrusted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    defuse_bare_broadcasts(&out)
}

/// `@channel`, `@here`, `@everyone` typed as plain words: a zero-width joiner after the `@`
/// keeps them readable and inert even if a client links names.
fn defuse_bare_broadcasts(text: &str) -> String {
    let mut out = text.to_string();
    for word in ["@channel", "@here", "@everyone"] {
        out = out.replace(word, &format!("@\u{2060}{}", &word[1..]));
    }
    out
}

/// Text a person typed (status updates, notes): their `<@U…>` mentions stay, broadcasts to a
/// whole channel (`<!channel>`, `<!here>`, `<!everyone>`, user groups) are shown but inert.
pub fn defuse_broadcasts(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("<!") {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        match tail.find('>') {
            Some(end) => {
                let inner = &tail[2..end];
                let name = inner.split('|').next().unwrap_or(inner);
                let label =
                    name.strip_prefix("subteam^").map(|_| inner.split('|').nth(1).unwrap_or("group")).unwrap_or(name);
                out.push_str(&format!("@\u{2060}{}", label.trim_start_matches('@')));
                rest = &tail[end + 1..];
            }
            None => {
                out.push_str("&lt;!");
                rest = &tail[2..];
            }
        }
    }
    out.push_str(rest);
    defuse_bare_broadcasts(&out)
}

/// A URL safe to put inside `<url|label>`: http(s) only, no characters that end the link.
pub fn safe_url(url: &str) -> Option<String> {
    let url = url.trim();
    let ok_scheme = url.starts_with("https://") || url.starts_with("http://");
    (ok_scheme && !url.contains(['<', '>', '|', ' ', '\n'])).then(|| url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_text_cannot_ping_or_link() {
        let hostile = "<!channel> <!here|here> <!everyone> <@U0123ABCD> <!subteam^S123|ops> <https://evil.example|click> @here & more";
        let safe = escape_untrusted(hostile);
        assert!(!safe.contains('<') && !safe.contains('>'), "{safe}");
        assert!(safe.contains("&lt;!channel&gt;"));
        assert!(safe.contains("&amp; more"));
        assert!(!safe.contains("@here"), "bare @here is defused: {safe}");
    }

    #[test]
    fn people_keep_mentions_but_not_broadcasts() {
        let typed = "ping <@U0123ABCD> and <!channel> and <!subteam^S1|sre-team> and @everyone";
        let out = defuse_broadcasts(typed);
        assert!(out.contains("<@U0123ABCD>"));
        assert!(!out.contains("<!channel>") && !out.contains("<!subteam"));
        assert!(!out.contains("@everyone"));
        assert!(out.contains("sre-team"));
    }

    #[test]
    fn only_plain_http_links_are_kept() {
        assert_eq!(
            safe_url("https://app.datadoghq.com/monitors/1"),
            Some("https://app.datadoghq.com/monitors/1".into())
        );
        assert_eq!(safe_url("javascript:alert(1)"), None);
        assert_eq!(safe_url("https://x.example/a|<!channel>"), None);
    }
}

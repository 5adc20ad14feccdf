//! The span search syntax the sandbox Datadog understands: `key:value` terms (implicitly and
//! explicitly `AND`ed), `OR` between terms, `-term` / `NOT term`, value lists `key:(a OR b)`,
//! `*` wildcards, quoted values and numeric ranges `key:[200 TO 299]` (as in the spans API's own
//! example, `service:web* AND @http.status_code:[200 TO 299]`). Reserved attributes (`service`,
//! `env`, `resource_name`, `trace_id`, `span_id`, `host`, `version`, `type`) are top-level span
//! attributes; `@path` reads the span's custom attributes; `status:error` is a span that failed.

use serde_json::Value;

/// A parsed query: alternatives (`OR`) of conjunctions (`AND`) of terms.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    any: Vec<Vec<Term>>,
}

#[derive(Debug, Clone, PartialEq)]
struct Term {
    negated: bool,
    key: String,
    values: Vec<Pattern>,
}

#[derive(Debug, Clone, PartialEq)]
enum Pattern {
    Glob(String),
    Range(f64, f64),
}

impl Query {
    /// Everything.
    pub fn all() -> Query {
        Query { any: vec![Vec::new()] }
    }

    pub fn parse(text: &str) -> Result<Query, String> {
        let tokens = tokenize(text)?;
        let mut any = vec![Vec::new()];
        let mut negate_next = false;
        for token in tokens {
            match token.as_str() {
                "AND" => {}
                "OR" => any.push(Vec::new()),
                "NOT" => negate_next = true,
                "*" => {}
                t => {
                    let (negated, t) = match t.strip_prefix('-') {
                        Some(rest) => (true, rest),
                        None => (negate_next, t),
                    };
                    negate_next = false;
                    let (key, value) = t.split_once(':').ok_or_else(|| format!("`{t}` is not a `key:value` term"))?;
                    if key.is_empty() || value.is_empty() {
                        return Err(format!("`{t}` is not a `key:value` term"));
                    }
                    any.last_mut().expect("one alternative at least").push(Term {
                        negated,
                        key: key.to_string(),
                        values: patterns(value)?,
                    });
                }
            }
        }
        if any.iter().any(Vec::is_empty) && any.len() > 1 {
            return Err("`OR` needs a term on each side".into());
        }
        Ok(Query { any })
    }

    /// Whether a span (its `attributes` object) matches.
    pub fn matches(&self, span: &Value) -> bool {
        self.any.iter().any(|all| all.iter().all(|t| t.matches(span)))
    }

    /// Whether only failed spans can match (every alternative requires `status:error`).
    pub fn matches_only_errors(&self) -> bool {
        self.any.iter().all(|all| {
            all.iter().any(|t| {
                t.key == "status"
                    && !t.negated
                    && t.values.iter().all(|p| matches!(p, Pattern::Glob(g) if g == "error"))
            })
        })
    }

    /// Whether a span of `service` could match: false only when every alternative requires a
    /// service it is not (so whole streams of other services need not be looked at).
    pub fn may_match_service(&self, service: &str) -> bool {
        let span = serde_json::json!({"service": service});
        self.any.iter().any(|all| all.iter().filter(|t| t.key == "service").all(|t| t.matches(&span)))
    }

    /// The values a term on `key` names (for lookups by trace id).
    pub fn values_of(&self, key: &str) -> Vec<String> {
        self.any
            .iter()
            .flatten()
            .filter(|t| t.key == key && !t.negated)
            .flat_map(|t| t.values.iter())
            .filter_map(|p| match p {
                Pattern::Glob(g) if !g.contains('*') => Some(g.clone()),
                _ => None,
            })
            .collect()
    }
}

/// Splits on whitespace outside quotes, brackets and parentheses.
fn tokenize(text: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    let (mut depth, mut quoted) = (0i32, false);
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            '(' | '[' if !quoted => {
                depth += 1;
                current.push(c);
            }
            ')' | ']' if !quoted => {
                depth -= 1;
                if depth < 0 {
                    return Err(format!("unbalanced `{c}` in the query"));
                }
                current.push(c);
            }
            c if c.is_whitespace() && depth == 0 && !quoted => {
                if !current.is_empty() {
                    tokens.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if depth != 0 || quoted {
        return Err("unbalanced parentheses, brackets or quotes in the query".into());
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    Ok(tokens)
}

fn patterns(value: &str) -> Result<Vec<Pattern>, String> {
    if let Some(inner) = value.strip_prefix('(').and_then(|v| v.strip_suffix(')')) {
        let parts: Vec<&str> = inner.split_whitespace().filter(|p| !p.eq_ignore_ascii_case("OR")).collect();
        if parts.is_empty() {
            return Err(format!("`{value}` lists no values"));
        }
        return parts.into_iter().map(single).collect();
    }
    Ok(vec![single(value)?])
}

fn single(value: &str) -> Result<Pattern, String> {
    if let Some(inner) = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
        let (lo, hi) = inner.split_once(" TO ").ok_or_else(|| format!("`{value}` is not a range `[a TO b]`"))?;
        let num = |s: &str| match s.trim() {
            "*" => Ok(f64::NAN),
            n => n.parse::<f64>().map_err(|_| format!("`{n}` in `{value}` is not a number")),
        };
        let (lo, hi) = (num(lo)?, num(hi)?);
        return Ok(Pattern::Range(if lo.is_nan() { f64::MIN } else { lo }, if hi.is_nan() { f64::MAX } else { hi }));
    }
    Ok(Pattern::Glob(value.trim_matches('"').to_string()))
}

impl Term {
    fn matches(&self, span: &Value) -> bool {
        let found = self.values.iter().any(|p| value_of(span, &self.key).is_some_and(|v| p.matches(&v)))
            || (self.key == "status" && self.values.iter().any(|p| p.matches(status_of(span))));
        found != self.negated
    }
}

impl Pattern {
    fn matches(&self, value: &str) -> bool {
        match self {
            Pattern::Glob(g) => glob(g, value),
            Pattern::Range(lo, hi) => value.parse::<f64>().is_ok_and(|n| n >= *lo && n <= *hi),
        }
    }
}

/// `*` matches any run of characters; case-insensitive, as facet search is.
fn glob(pattern: &str, value: &str) -> bool {
    let (p, v) = (pattern.to_ascii_lowercase(), value.to_ascii_lowercase());
    let parts: Vec<&str> = p.split('*').collect();
    if parts.len() == 1 {
        return p == v;
    }
    let mut rest = v.as_str();
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else { return false };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(at) = rest.find(part) else { return false };
            rest = &rest[at + part.len()..];
        }
    }
    true
}

/// A span failed when it carries `error.type` / `error.message` (or says `status: error`).
pub fn status_of(span: &Value) -> &'static str {
    let error =
        span.pointer("/custom/error").is_some_and(|e| e.is_object() && e.as_object().is_some_and(|o| !o.is_empty()));
    if error || span["status"].as_str() == Some("error") { "error" } else { "ok" }
}

/// An attribute's value as text: reserved attributes at the top level, `@path` in `custom`.
pub fn value_of(span: &Value, key: &str) -> Option<String> {
    let v = match key.strip_prefix('@') {
        Some(path) => {
            let mut v = span.get("custom")?;
            for part in path.split('.') {
                v = v.get(part)?;
            }
            v
        }
        None if key == "status" => return None,
        None => span.get(key).or_else(|| span.pointer(&format!("/custom/{key}")))?,
    };
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn terms_lists_negation_ranges_and_globs() {
        let span = json!({"service": "api-gateway", "env": "prod", "trace_id": "42",
                          "custom": {"usr": {"org_id": "acme"}, "http": {"status_code": "503"}, "error": {"type": "Timeout"}}});
        for (q, expected) in [
            ("service:api-gateway env:prod status:error", true),
            ("service:api-* AND @http.status_code:[500 TO 599]", true),
            ("service:web* OR @usr.org_id:acme", true),
            ("trace_id:(7 OR 42 OR 9)", true),
            ("-service:api-gateway", false),
            ("NOT status:error", false),
            ("status:ok", false),
            ("@usr.org_id:globex", false),
            ("*", true),
        ] {
            assert_eq!(Query::parse(q).unwrap().matches(&span), expected, "{q}");
        }
        assert_eq!(Query::parse("trace_id:(7 OR 42)").unwrap().values_of("trace_id"), ["7", "42"]);
        assert!(Query::parse("service:(api").is_err());
        assert!(Query::parse("justaword").is_err());
    }
}

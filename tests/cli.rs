//! The binary as users run it: `check-config` and `serve`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_incident-commander");
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/incident-commander.example.toml");

#[test]
fn check_config_accepts_the_example_and_shows_who_is_on_call() {
    let out = Command::new(BIN).args(["check-config", EXAMPLE, "--at", "2026-11-10T01:00:00Z"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains(": OK"), "{stdout}");
    assert!(stdout.contains("teams: 2 (default: backend)"), "{stdout}");
    // Second week of the Seoul rotation (from Monday 2026-11-09 09:00 KST = 00:00 UTC): U0BBB, then U0CCC.
    assert!(stdout.contains("U0BBB (commander) until 2026-11-16 09:00 KST; next: U0CCC (investigator)"), "{stdout}");
}

#[test]
fn check_config_lists_every_problem_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[slack]\nalert_botz = []\nalert_channels = [\"C0ALERTS1\"]\n[[team]]\nname = \"a\"\nmembers = []\n[[team]]\nname = \"b\"\nmembers = [\"U0AAA\"]\nrotation_timezone = \"Moon/Base\"\n",
    )
    .unwrap();
    let out = Command::new(BIN).args(["check-config", path.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines[..3],
        [
            "slack.alert_botz: unknown key (did you mean alert_bots?)",
            "team[0].members: a rotation needs at least one member",
            "team[1].rotation_timezone: unknown time zone `Moon/Base` (use an IANA name such as \"Asia/Seoul\" or \"UTC\")",
        ],
        "{stderr}"
    );
    assert!(lines[3].ends_with("bad.toml: 3 problems found"), "{stderr}");
}

#[test]
fn check_config_on_a_missing_file_exits_2_and_says_so() {
    let out = Command::new(BIN).args(["check-config", "/nonexistent/policy.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/policy.toml"));
}

#[test]
fn serve_refuses_a_bad_policy_with_the_same_messages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[slack]\nalert_botz = []\n").unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config", path.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("slack.alert_botz: unknown key (did you mean alert_bots?)"), "{stderr}");
    assert!(stderr.contains("the bot did not start"), "{stderr}");
}

#[test]
fn serve_answers_healthz_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--config", EXAMPLE, "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // Logs are JSON lines when stderr is not a terminal; the bound address is in the "listening" line.
    let addr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|line| {
            let v: serde_json::Value = serde_json::from_str(&line).ok()?;
            (v["message"] == "listening").then(|| v["addr"].as_str().unwrap().to_string())
        })
        .expect("serve logs the address it listens on");
    let health = std::net::TcpStream::connect(&addr).and_then(|mut s| {
        use std::io::{Read, Write};
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
        let mut body = String::new();
        s.read_to_string(&mut body)?;
        Ok(body)
    });
    let health = health.unwrap();
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains("\"status\":\"ok\""), "{health}");

    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{rest:#?}");
    assert!(rest.iter().any(|l| l.contains("stopped cleanly")), "{rest:#?}");
}

#[test]
fn manifest_is_valid_slack_manifest_yaml_with_what_the_bot_needs() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/manifest.yml")).unwrap();
    let m: serde_json::Value = serde_yaml_ng::from_str(&text).expect("manifest.yml is valid YAML");
    let scopes: Vec<&str> =
        m["oauth_config"]["scopes"]["bot"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    for needed in [
        "chat:write",
        "channels:history",
        "groups:history",
        "reactions:read",
        "reactions:write",
        "commands",
        "app_mentions:read",
        "users:read",
        "channels:manage",
        "channels:join",
        "pins:write",
    ] {
        assert!(scopes.contains(&needed), "missing bot scope {needed}");
    }
    let events: Vec<&str> = m["settings"]["event_subscriptions"]["bot_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    for needed in ["message.channels", "message.groups", "reaction_added", "app_mention"] {
        assert!(events.contains(&needed), "missing bot event {needed}");
    }
    let command = &m["features"]["slash_commands"][0];
    assert_eq!(command["command"], "/incident");
    assert!(command["usage_hint"].as_str().unwrap().contains("declare"));
    assert_eq!(m["settings"]["interactivity"]["is_enabled"], true);
    assert_eq!(m["settings"]["socket_mode_enabled"], true);
    assert_eq!(m["display_information"]["name"], "incident-commander");
    assert!(m["display_information"]["name"].as_str().unwrap().len() <= 35, "Slack limits app names to 35 characters");
}

fn simulate(payload: &str, extra: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("payload.json");
    std::fs::write(&path, payload).unwrap();
    let out = Command::new(BIN)
        .args(["simulate", path.to_str().unwrap(), "--config", EXAMPLE, "--at", "2026-11-25T12:00:00Z"])
        .args(extra)
        .output()
        .unwrap();
    (out.status.code().unwrap(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn simulate_explains_a_datadog_slack_alert() {
    let envelope = serde_json::json!({
        "type": "event_callback", "event_id": "Ev1", "team_id": "T1",
        "event": {"type": "message", "subtype": "bot_message", "bot_id": "B0DD", "username": "Datadog", "text": "",
                  "ts": "1800000000.000100", "channel": "C0ALERTS1",
                  "attachments": [{"title": "[P1] [Triggered on {service:api-gateway,env:prod}] API errors",
                                   "title_link": "https://app.datadoghq.com/monitors/77"}]}
    });
    let (code, stdout, stderr) = simulate(&envelope.to_string(), &[]);
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["format"], "slack_envelope");
    let a = &report["alerts"][0];
    assert_eq!(a["fingerprint"], "datadog:monitor:77:env:prod,service:api-gateway");
    assert_eq!(a["team"], "backend");
    assert_eq!(a["decision"]["action"], "open");
    assert_eq!(a["decision"]["incident"], "INC-1");
    assert_eq!(a["severity"]["level"], "SEV1");
    assert_eq!(a["severity"]["reason"], "P1 alert in production");
    assert_eq!(a["commander"], "U0AAA");
    assert_eq!(a["investigator"], "U0BBB");
    assert!(a["thread"].as_str().unwrap().contains("reply thread on the alert message 1800000000.000100"));
}

#[test]
fn simulate_folds_repeats_and_says_why_it_ignores() {
    let am = serde_json::json!({"version": "4", "status": "firing", "alerts": [
        {"status": "firing", "labels": {"alertname": "Down", "team": "frontend"}, "startsAt": "2026-11-25T11:00:00Z", "fingerprint": "x1"},
        {"status": "firing", "labels": {"alertname": "Down", "team": "frontend"}, "startsAt": "2026-11-25T11:05:00Z", "fingerprint": "x1"},
        {"status": "resolved", "labels": {"alertname": "Other"}, "startsAt": "2026-11-25T10:00:00Z", "endsAt": "2026-11-25T10:30:00Z", "fingerprint": "x2"}
    ]});
    let (code, stdout, _) = simulate(&am.to_string(), &[]);
    assert_eq!(code, 0);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["format"], "alertmanager");
    let decisions: Vec<&str> =
        report["alerts"].as_array().unwrap().iter().map(|a| a["decision"]["action"].as_str().unwrap()).collect();
    assert_eq!(decisions, ["open", "fold", "ignore"]);
    assert_eq!(report["alerts"][0]["team"], "frontend");
    assert_eq!(report["alerts"][1]["decision"]["incident"], "INC-1");
    assert!(
        report["alerts"][2]["decision"]["reason"].as_str().unwrap().contains("Recovered alert with no open incident")
    );

    let person = serde_json::json!({"type": "message", "user": "U0AAA", "text": "[Triggered] hi", "ts": "1.1", "channel": "C0ALERTS1"});
    let (code, stdout, _) = simulate(&person.to_string(), &[]);
    assert_eq!(code, 0);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["alerts"].as_array().unwrap().len(), 0);
    assert!(report["notes"][0].as_str().unwrap().starts_with("not an alert"));
}

#[test]
fn simulate_refuses_unreadable_payloads_with_exit_2() {
    for bad in ["not json", "[1,2,3]", "{\"hello\": 1}", "{\"version\": \"4\", \"alerts\": []}"] {
        let (code, _, stderr) = simulate(bad, &[]);
        assert_eq!(code, 2, "{bad}");
        assert!(stderr.starts_with("cannot read"), "{stderr}");
    }
}

/// A payload with more alerts than the storm rate goes the bot's own way: the first alerts open
/// their incidents as usual, then the channel is in a storm and the summary is posted once.
#[test]
fn simulate_shows_a_storm() {
    let alerts: Vec<serde_json::Value> = (0..14)
        .map(|i| {
            serde_json::json!({"status": "firing", "labels": {"alertname": format!("Disk{i}"), "team": "backend"},
                               "startsAt": "2026-11-25T11:59:00Z", "fingerprint": format!("d{i}")})
        })
        .collect();
    let am = serde_json::json!({"version": "4", "status": "firing", "alerts": alerts});
    let (code, stdout, stderr) = simulate(&am.to_string(), &[]);
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let reports = report["alerts"].as_array().unwrap();
    assert_eq!(reports.len(), 14);
    assert!(reports.iter().all(|a| a["decision"]["action"] == "open"), "{stdout}");
    let summaries: Vec<usize> = reports
        .iter()
        .enumerate()
        .filter(|(_, a)| {
            a["messages"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m.as_str().unwrap().starts_with("post the alert storm summary"))
        })
        .map(|(i, _)| i)
        .collect();
    assert_eq!(summaries, [10], "the eleventh alert within a minute starts the storm (alerts.storm = 10 per 1m)");
    let first = reports[0]["messages"].as_array().unwrap();
    assert!(first.iter().any(|m| m == "post the incident's root message in C0ALERTS1"), "{first:?}");
}

#[test]
fn check_config_names_bad_follow_up_settings_and_missing_tracker_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let base = "[slack]\nalert_channels = [\"C0ALERTS1\"]\n[[team]]\nname = \"a\"\nmembers = [\"U0AAA\"]\nchannel = \"C0ALERTS1\"\n";
    let run = |name: &str, followups: &str, env: &[(&str, &str)]| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("{base}[followups]\n{followups}\n")).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(["check-config", path.to_str().unwrap()]);
        for key in ["GITHUB_TOKEN", "GITHUB_API_URL", "JIRA_BASE_URL", "JIRA_EMAIL", "JIRA_API_TOKEN"] {
            cmd.env_remove(key);
        }
        cmd.envs(env.iter().copied());
        let out = cmd.output().unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
    };
    // Keys the policy gets wrong.
    let (code, _, stderr) = run("bad.toml", "tracker = \"linear\"\nemoji = \"eyes\"\nlabels = [\"\"]", &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("followups.tracker: `linear` is not a tracker: use \"github\" or \"jira\""), "{stderr}");
    assert!(stderr.contains("followups.emoji: `eyes` is already the acknowledge reaction"), "{stderr}");
    assert!(stderr.contains("followups.labels[0]: a label has 1 to 50 characters"), "{stderr}");
    let (code, _, stderr) = run("repo.toml", "tracker = \"github\"\ngithub_repo = \"just-a-name\"", &[]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("followups.github_repo: `just-a-name` is not a repository: write \"owner/name\""),
        "{stderr}"
    );
    // The credentials the tracker needs, from the environment.
    let (code, _, stderr) =
        run("jira.toml", "tracker = \"jira\"\njira_project = \"OPS\"", &[("JIRA_BASE_URL", "not a url")]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("followups.tracker: JIRA_BASE_URL: `not a url` is not a URL"), "{stderr}");
    assert!(stderr.contains("followups.tracker: JIRA_EMAIL: not set"), "{stderr}");
    assert!(stderr.contains("followups.tracker: JIRA_API_TOKEN: not set"), "{stderr}");
    let (code, stdout, stderr) =
        run("ok.toml", "tracker = \"github\"\ngithub_repo = \"acme/ops\"", &[("GITHUB_TOKEN", "ghp_x")]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("follow-ups: tickets in GitHub acme/ops (reaction :ticket:)"), "{stdout}");
}

//! The demo scenario end to end: every element the demo promises shows in its transcript.

use incident_commander::demo::{DEFAULT_POLICY, DEFAULT_SCENARIO, Scenario, run, write_outputs};

#[tokio::test]
async fn the_builtin_demo_shows_the_whole_mission() {
    let scenario = Scenario::parse(DEFAULT_SCENARIO).unwrap();
    let demo = run(&scenario, DEFAULT_POLICY).await.expect("the demo plays");
    let t = &demo.transcript;
    let has = |needle: &str| assert!(t.contains(needle), "the transcript lacks {needle:?}:\n{t}");

    // A Datadog alert posted by Datadog's app in #alerts-backend.
    has("━━━ #alerts-backend ━━━");
    has("Datadog (app)\n       [P2] [Triggered on {service:api-gateway,env:prod}] Checkout API error rate above 5%");
    // The incident thread: severity with its reason, commander and investigator from the rotation.
    has("*INC-1 · SEV2 · Checkout API error rate above 5%*");
    has("Severity: SEV2 — priority P2");
    has("Commander: @alice");
    has("Investigator: @bob");
    // Evidence: traces and the per-customer table with an isolated verdict.
    has("*Isolated to acme-corp*");
    has("customer                 requests   errors   ratio   share");
    has("https://app.datadoghq.com/apm/trace/");
    // The whole failing traces, looked up by id: the path from the frontend to the database where
    // the error began, the teams from the policy, the failing code, the bad version.
    has("crosses frontend → backend");
    has("path: web-checkout (frontend) → *api-gateway* (backend) → orders-api (backend) → orders-db (backend)");
    has("other customers (");
    has("likely origin: `orders-db` SELECT orders — `PSQLException`");
    has("at `com.shop.orders.OrderRepository.reserve(OrderRepository.java:118)`");
    has("*Errors concentrate in version 2.4.1*");
    has("no customer                 ");
    // Re-notifications folded.
    has("reactions: :repeat: incident-commander");
    has("The alert is now *Re-Triggered*");
    // Escalation and a reminder on the fast clock.
    has("INC-1 has not been acknowledged for 3m. @alice @bob");
    has("@alice — no status update for 6m");
    // The investigator claiming by reaction; acknowledgement; a status update; mitigation.
    has("reactions: :mag: bob");
    has("@bob confirmed the investigator role");
    has("@alice acknowledged. Escalation stopped.");
    has("*Status update* from @alice: Rolling back deploy 4512");
    has("*Mitigated* by @alice");
    // The recovery alert, the root cause, resolve and the postmortem.
    has("[P2] [Recovered on {service:api-gateway,env:prod}]");
    has("The alert recovered (was Re-Triggered)");
    has("*Root cause found* by @bob: Deploy 4512 halved the orders-db connection pool");
    has("*INC-1 resolved* after 13m");
    has("# Postmortem draft: INC-1 · Checkout API error rate above 5%");
    has("Evidence at resolution: isolated to acme-corp");
    // A second, global incident from an Alertmanager webhook for the frontend team.
    has("━━━ #alerts-frontend ━━━");
    has("*INC-2* — HighErrorRate: web-shop 5xx above 10% for every region (Alertmanager)");
    has("*Global* — error ratio");
    has("Severity SEV3 → *SEV1*: the evidence shows every customer failing");
    has("Commander: @erin");
    has("@erin acknowledged");
    has("━━━ #inc-2-higherrorrate");
    // A follow-up filed as a GitHub issue, linked from the thread and the postmortem.
    has(
        "Follow-up *F-1* recorded: Alert on orders-db connection pool saturation above 80% (owner @carol). Filing a ticket in GitHub acme/ops",
    );
    has("filed for follow-up *F-1*");
    has("acme/ops#1");
    // Headers are shown in their final state.
    has("Status: :white_check_mark: Resolved");
    assert!(demo.elapsed.as_secs() < 15, "the demo took {:?}", demo.elapsed);

    let postmortem = &demo.postmortems.iter().find(|(id, _)| id.to_string() == "INC-1").expect("INC-1's postmortem").1;
    assert!(postmortem.contains("Deploy 4512 halved"));
    assert!(postmortem.contains("[acme/ops#1](https://github.com/acme/ops/issues/1)"), "{postmortem}");
    // The lead's stats, privately.
    assert!(demo.log.contains("(only dana sees) *Incident stats · all teams · last 30d*"), "{}", demo.log);
    assert!(demo.log.contains("2 incidents"), "{}", demo.log);
    assert_eq!(demo.driver.trackers.issues().len(), 1);
    let services: Vec<&str> = demo.calls.iter().filter_map(|c| c["service"].as_str()).collect();
    assert!(services.contains(&"slack") && services.contains(&"datadog"), "every Slack and Datadog call is recorded");

    let dir = tempfile::tempdir().unwrap();
    let written = write_outputs(&demo, dir.path()).unwrap();
    let names: Vec<String> = written.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["transcript.txt", "postmortem-INC-1.md", "calls.jsonl"]);
    let jsonl = std::fs::read_to_string(dir.path().join("calls.jsonl")).unwrap();
    for line in jsonl.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("one JSON object per line");
        assert!(v["service"].is_string());
    }
    demo.driver.stop().await.unwrap();
}

#[test]
fn the_demo_binary_runs_a_users_scenario_and_refuses_a_broken_one() {
    let bin = env!("CARGO_BIN_EXE_incident-commander");
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[slack]\nalert_channels = [\"C0OPS00001\"]\n[[team]]\nname = \"ops\"\nmembers = [\"U0OPS00001\", \"U0OPS00002\"]\nchannel = \"C0OPS00001\"\n",
    )
    .unwrap();
    let scenario = dir.path().join("scenario.toml");
    std::fs::write(
        &scenario,
        r#"
start = "2026-11-04T10:00:00Z"
[people]
U0OPS00001 = "olga"
U0OPS00002 = "omar"
[channels]
C0OPS00001 = "ops"
[[step]]
note = "Olga declares an incident."
slash = { who = "olga", channel = "ops", text = "declare Queue backlog growing sev 3" }
[[step]]
wait = "40m"
note = "Nobody acknowledged."
"#,
    )
    .unwrap();
    let out = std::process::Command::new(bin)
        .args(["demo", "--scenario"])
        .arg(&scenario)
        .arg("--config")
        .arg(&policy)
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("INC-1 · SEV3 · Queue backlog growing"), "{stdout}");
    assert!(stdout.contains("(only olga sees) Declared INC-1"), "{stdout}");
    assert!(stdout.contains("has not been acknowledged for 40m"), "{stdout}");
    assert!(dir.path().join("out/transcript.txt").exists());

    std::fs::write(&scenario, "[[step]]\nslash = { who = \"nobody\", channel = \"ops\", text = \"help\" }\n").unwrap();
    let out = std::process::Command::new(bin)
        .args(["demo", "--scenario"])
        .arg(&scenario)
        .arg("--out")
        .arg(dir.path().join("out2"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("step 1: nobody is called `nobody` in [people]"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

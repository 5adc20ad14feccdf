//! The dashboard of a bot fed by the sandbox: access (token, sign-in cookie, 401), escaping of
//! untrusted alert text, and every page loaded in a real headless Chromium, asserting on the
//! rendered DOM and writing screenshots to the test output.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::TimeDelta;
use common::*;
use incident_commander::app::clock::ManualClock;
use incident_commander::sandbox::datadog::DatadogWorld;
use incident_commander::sandbox::driver::DASHBOARD_TOKEN;
use incident_commander::sandbox::harness::{DatadogPost, Harness, HarnessOptions};

const HOSTILE: &str = "<script>document.title='pwned'</script><img src=x onerror=alert(1)> checkout <b>down</b>";

/// A bot with a resolved incident (root cause, a follow-up) and an open one whose alert title is
/// hostile HTML.
async fn bot_with_history() -> Harness {
    let mut options =
        HarnessOptions::http(&format!("{POLICY}\n[followups]\ntracker = \"github\"\ngithub_repo = \"acme/ops\"\n"));
    options.clock = Some(Arc::new(ManualClock::new(t0())));
    // Evidence for INC-1: acme fails, the others do not.
    options.datadog =
        Some(DatadogWorld::api_gateway(&[("acme", 100, 0.30), ("globex", 300, 0.001), ("initech", 200, 0.0)]));
    let mut t = Harness::start(options).await;
    let alert = DatadogPost::new("[P2] [Triggered on {service:api-gateway,env:prod}] API p99 latency high", 4242)
        .body("p99 above 800ms")
        .tags(&["team:backend"]);
    t.post_datadog_alert(ALERTS, &alert).await;
    t.advance(TimeDelta::minutes(3)).await;
    t.slash(ALICE, ALERTS, "ack INC-1").await;
    t.advance(TimeDelta::minutes(9)).await;
    t.slash(ALICE, ALERTS, "mitigated INC-1 rolled back").await;
    t.slash(BOB, ALERTS, "rootcause INC-1 connection pool halved by deploy 4512").await;
    t.slash(ALICE, ALERTS, "resolve INC-1 pool restored").await;
    t.slash(BOB, ALERTS, &format!("followup INC-1 alert on pool saturation <@{CAROL}>")).await;
    t.advance(TimeDelta::days(8)).await;
    let hostile = DatadogPost::new(&format!("[P1] [Triggered on {{service:web-shop,env:prod}}] {HOSTILE}"), 77)
        .body("5xx everywhere")
        .tags(&["team:frontend"]);
    t.post_datadog_alert(FRONT, &hostile).await;
    t.ack_all();
    t
}

/// A form body, as a browser sends it.
fn form(fields: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish()
}

fn url(t: &Harness, path: &str) -> String {
    format!("http://{}{path}", t.app.addr)
}

#[tokio::test]
async fn access_needs_the_token_and_alert_text_is_escaped() {
    let t = bot_with_history().await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    for path in ["/", "/incidents/INC-1", "/insights"] {
        let r = client.get(url(&t, path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path} without the token");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        let r = client.get(url(&t, path)).bearer_auth("wrong").send().await.unwrap();
        assert_eq!(r.status(), 401, "{path} with a wrong token");
        let r = client.get(url(&t, path)).bearer_auth(DASHBOARD_TOKEN).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path} with the token");
    }
    // Signing in once sets a cookie that opens every page.
    let r = client
        .post(url(&t, "/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("token", "nope")]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .post(url(&t, "/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("token", DASHBOARD_TOKEN), ("next", "/insights")]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/insights");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
    let pair = cookie.split(';').next().unwrap().to_string();
    let r = client.get(url(&t, "/")).header("cookie", &pair).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    // The hostile title is shown, escaped; nothing of it runs.
    assert!(html.contains("&lt;script&gt;document.title="), "{html}");
    assert!(!html.contains("<script>document.title") && !html.contains("<img src=x"), "{html}");
    // An open redirect is refused: `next` must be a path here.
    let r = client
        .post(url(&t, "/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("token", DASHBOARD_TOKEN), ("next", "//evil.example/")]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/");
    // Unknown incidents are 404 with a way back; no page changes anything.
    let r = client.get(url(&t, "/incidents/INC-99")).bearer_auth(DASHBOARD_TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = client.post(url(&t, "/incidents/INC-1")).bearer_auth(DASHBOARD_TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 405);
}

/// Headless Chromium: the Debian package `chromium`. Missing, the browser test says so and
/// passes, unless `IC_REQUIRE_CHROMIUM` is set (CI installs it and sets it).
fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser", "google-chrome"].iter().find_map(|name| {
        std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(name)).find(|p| p.exists())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("IC_REQUIRE_CHROMIUM").is_none(),
            "IC_REQUIRE_CHROMIUM is set but chromium is not installed"
        );
        eprintln!("chromium is not installed: the browser test is skipped (apt-get install chromium)");
    }
    found
}

/// Loads `path` in Chromium, signed in through the login form the way a person does, and returns
/// the rendered DOM; writes a screenshot at each window size next to the test output.
fn browse(browser: &Path, t: &Harness, path: &str, name: &str, out: &Path) -> String {
    let page = out.join(format!("{name}-login.html"));
    std::fs::write(
        &page,
        format!(
            r#"<!doctype html><form id=f method=post action="{}"><input name=token value="{DASHBOARD_TOKEN}"><input name=next value="{path}"></form><script>document.getElementById('f').submit()</script>"#,
            url(t, "/login")
        ),
    )
    .unwrap();
    let profile = tempfile::tempdir().unwrap();
    let run = |extra: &[String]| {
        // The browser is not under test: keep libfaketime (`.ci/shifted-clock`) out of it, which
        // Chromium does not survive. The pages' times come from the bot's own clock anyway.
        let out = std::process::Command::new(browser)
            .env_remove("LD_PRELOAD")
            .env_remove("FAKETIME")
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("--virtual-time-budget=10000")
            .args(extra)
            .arg(format!("file://{}", page.display()))
            .output()
            .expect("chromium runs");
        assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    for (size, suffix) in [("1280,900", "desktop"), ("390,844", "phone")] {
        let shot = out.join(format!("{name}-{suffix}.png"));
        run(&[format!("--window-size={size}"), format!("--screenshot={}", shot.display())]);
        assert!(std::fs::metadata(&shot).map(|m| m.len() > 5_000).unwrap_or(false), "screenshot {shot:?} written");
    }
    run(&["--dump-dom".to_string()])
}

// The browser runs as a blocking child process: the bot needs runtime threads of its own meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_renders_in_a_real_browser() {
    let Some(browser) = chromium() else { return };
    let t = bot_with_history().await;
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&out).unwrap();

    let dom = browse(&browser, &t, "/", "index", &out);
    assert!(dom.contains("<title>Incidents · incident-commander</title>"), "{dom}");
    assert!(dom.contains(r#"<h2 id="open">Open (1)</h2>"#), "{dom}");
    assert!(dom.contains(r#"<h2 id="recent">Recently resolved (1)</h2>"#), "{dom}");
    assert!(dom.contains(r#"<tr data-incident="INC-2">"#) && dom.contains(r#"<tr data-incident="INC-1">"#), "{dom}");
    // The hostile title is text in the DOM: no script ran (the title is ours) and no img exists.
    assert!(dom.contains("&lt;script&gt;document.title='pwned'&lt;/script&gt;&lt;img src=x"), "{dom}");
    assert!(!dom.contains("<img"), "{dom}");
    assert!(dom.contains(r#"<span class="sev sev-1">SEV1</span>"#), "{dom}");

    let dom = browse(&browser, &t, "/incidents/INC-1", "incident", &out);
    assert!(dom.contains("INC-1 · API p99 latency high"), "{dom}");
    assert!(dom.contains("Resolved · root cause found"), "{dom}");
    assert!(dom.contains("3m 00s / 12m 00s / 12m 00s"), "{dom}");
    assert!(dom.contains(r#"<a href="https://github.com/acme/ops/issues/1">acme/ops#1</a>"#), "{dom}");
    assert!(dom.contains("/archives/C0ALERTS1/p"), "links the Slack thread: {dom}");
    assert!(dom.contains("<h1>Postmortem draft: INC-1 · API p99 latency high</h1>"), "the Markdown is rendered: {dom}");
    assert!(dom.contains("connection pool halved by deploy 4512"), "{dom}");
    // The evidence: the customer table and verdict, and the traces as links into Datadog.
    assert!(dom.contains("Isolated to acme"), "{dom}");
    assert!(dom.contains(r#"<a href="https://app.datadoghq.com/apm/trace/"#), "trace links are links: {dom}");

    let dom = browse(&browser, &t, "/insights", "insights", &out);
    assert_eq!(dom.matches("<svg").count(), 5, "{dom}");
    // INC-1 opened the week of Monday 2026-11-02, INC-2 the week after.
    assert!(dom.contains(r#"data-week="2026-11-02" data-count="1""#), "{dom}");
    assert!(dom.contains(r#"data-week="2026-11-09" data-count="1""#), "{dom}");
    assert!(dom.contains(r#"data-team="backend""#) && dom.contains(r#"data-median-seconds="180""#), "{dom}");
    eprintln!("screenshots in {}", out.display());
}

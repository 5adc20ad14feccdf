//! Keeps the core pure: `src/domain` and `src/policy` do no I/O and read no clock.

use std::path::Path;

/// Crates and APIs that mean I/O, concurrency runtime or wall-clock time.
const FORBIDDEN: [&str; 12] = [
    "tokio",
    "sled",
    "reqwest",
    "axum",
    "hyper",
    "slack_morphism",
    "std::fs",
    "std::net",
    "std::io",
    "Utc::now",
    "SystemTime",
    "Instant::now",
];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn domain_and_policy_have_no_io_imports() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root.join("domain"), &mut files);
    rust_files(&root.join("policy"), &mut files);
    assert!(files.len() >= 8, "found the core's files");
    let mut violations = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for word in FORBIDDEN {
                if code.contains(word) {
                    violations.push(format!("{}:{}: {word}", file.display(), n + 1));
                }
            }
        }
    }
    assert!(violations.is_empty(), "the pure core must not do I/O:\n{}", violations.join("\n"));
}

/// The only places that may read the machine's date and time. Everything else takes `now` from
/// the injected `Clock`, so a bot on a manual clock (tests, the demo) never mixes in the wall
/// clock and the suite passes on any date.
const WALL_CLOCK_ALLOWED: [(&str, &str); 6] = [
    // The clock itself.
    ("app/clock.rs", "SystemClock reads the machine's clock"),
    // Silence is measured in real time: a socket that delivers nothing is dead whatever the
    // bot's clock says.
    ("slack/socket.rs", "the Socket Mode watchdog"),
    // The command line's defaults for `--at` (check-config, simulate) and the demo's start.
    ("cli.rs", "defaults of --at"),
    ("demo/mod.rs", "the demo clock's default start"),
    // The fake Slack stamps deliveries and signatures with real time, as Slack does; the bot's
    // signature check (slack-morphism's verifier) reads the machine's clock too.
    ("sandbox/slack.rs", "request signatures and event_time, as real Slack sends them"),
    // The fake Datadog records call times and reads date math (`now-15m`) against real time, as
    // Datadog does.
    ("sandbox/datadog/mod.rs", "call records, date math and request ids"),
];

#[test]
fn only_the_clock_reads_the_wall_clock() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut violations = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&root).unwrap().to_string_lossy().replace('\\', "/");
        if WALL_CLOCK_ALLOWED.iter().any(|(allowed, _)| *allowed == relative) {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for word in ["Utc::now", "Local::now", "SystemTime::now", "chrono::Utc::now"] {
                if code.contains(word) {
                    violations.push(format!("src/{relative}:{}: {word}", n + 1));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "read the time from the injected Clock (or add the file to WALL_CLOCK_ALLOWED with the reason):\n{}",
        violations.join("\n")
    );
}

//! Keeps the layers apart: the pure core does no I/O and reads no clock, the application layer
//! names no adapter's crate, only the clock reads the wall clock, and every dependency between
//! top-level modules follows the table in [`LAYERS`] (also drawn in docs/design.md).

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

/// Lines of code (comments cut off) containing any of `words`, as `file:line: word`.
fn uses_of(files: &[std::path::PathBuf], words: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for word in words {
                if code.contains(word) {
                    found.push(format!("{}:{}: {word}", file.display(), n + 1));
                }
            }
        }
    }
    found
}

fn src() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn the_core_has_no_io_imports() {
    let mut files = Vec::new();
    for core in ["domain", "policy", "sources"] {
        rust_files(&src().join(core), &mut files);
    }
    assert!(files.len() >= 12, "found the core's files");
    let violations = uses_of(&files, &FORBIDDEN);
    assert!(violations.is_empty(), "the pure core must not do I/O:\n{}", violations.join("\n"));
}

/// The crates of the adapters: the application layer names none of them.
const ADAPTER_CRATES: [&str; 7] = ["sled", "reqwest", "axum", "hyper", "slack_morphism", "tungstenite", "governor"];

#[test]
fn the_application_layer_names_no_adapter() {
    let mut files = Vec::new();
    rust_files(&src().join("app"), &mut files);
    assert!(files.len() >= 8, "found the application's files");
    let violations = uses_of(&files, &ADAPTER_CRATES);
    assert!(
        violations.is_empty(),
        "the application layer is adapter-neutral: put wire formats and clients in an adapter:\n{}",
        violations.join("\n")
    );
}

/// Every top-level module and the modules it may use, lower layers first: a module may only
/// name modules listed above it, so the table cannot hold a cycle. A new module gets a row; a
/// new edge is a design change (docs/design.md).
const LAYERS: &[(&str, &[&str])] = &[
    // Leaves and the pure core.
    ("tls", &[]),
    ("domain", &[]),
    ("policy", &["domain"]),
    ("sources", &["domain"]),
    // The application layer.
    ("app", &["domain"]),
    // Adapters.
    ("store", &["app", "domain"]),
    ("http", &["app", "domain", "sources"]),
    ("slack", &["app", "domain", "sources", "http", "tls"]),
    ("datadog", &["app", "domain", "tls"]),
    ("trackers", &["app", "domain", "tls"]),
    ("dashboard", &["app", "domain"]),
    // Wiring and the tools on top.
    ("startup", &["app", "domain", "http", "slack", "datadog", "trackers", "dashboard"]),
    ("simulate", &["app", "domain", "sources", "slack", "store"]),
    (
        "sandbox",
        &["app", "domain", "policy", "sources", "store", "http", "slack", "datadog", "trackers", "startup", "tls"],
    ),
    ("demo", &["app", "domain", "policy", "sandbox"]),
    (
        "cli",
        &[
            "app", "domain", "policy", "store", "slack", "datadog", "trackers", "startup", "simulate", "sandbox",
            "demo", "tls",
        ],
    ),
];

/// The top-level module a file belongs to (`src/app/inbox.rs` -> `app`, `src/cli.rs` -> `cli`);
/// `None` for the crate roots.
fn top_module(root: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(root).unwrap();
    let first = relative.components().next()?.as_os_str().to_string_lossy().to_string();
    let name = first.trim_end_matches(".rs").to_string();
    (!matches!(name.as_str(), "lib" | "main")).then_some(name)
}

/// The `crate::<module>` paths a file uses, with their line numbers.
fn crate_paths(file: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            out.push((n + 1, if name.is_empty() { after.chars().take(1).collect() } else { name }));
            rest = after;
        }
    }
    out
}

#[test]
fn the_layer_table_has_no_cycle() {
    for (i, (module, uses)) in LAYERS.iter().enumerate() {
        for used in *uses {
            let below = LAYERS[..i].iter().any(|(m, _)| m == used);
            assert!(below, "{module} may use {used}, which is not listed above it: that would allow a cycle");
        }
    }
}

#[test]
fn modules_depend_only_along_the_allowed_edges() {
    let root = src();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut violations = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for file in &files {
        let Some(module) = top_module(&root, file) else { continue };
        let Some((_, allowed)) = LAYERS.iter().find(|(m, _)| *m == module) else {
            violations.push(format!("{}: module `{module}` has no row in LAYERS", file.display()));
            continue;
        };
        for (line, used) in crate_paths(file) {
            if used == "{" {
                violations.push(format!(
                    "{}:{line}: a grouped `crate::{{...}}` import; write one `use` per module so edges can be checked",
                    file.display()
                ));
            } else if used != module && !allowed.contains(&used.as_str()) {
                violations.push(format!("{}:{line}: `{module}` may not use `{used}`", file.display()));
            } else {
                seen.insert((module.clone(), used));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "dependencies against the table in tests/architecture.rs (see docs/design.md):\n{}",
        violations.join("\n")
    );
    assert!(seen.contains(&("slack".to_string(), "app".to_string())), "the scan sees real edges");
}

/// The only places that may read the machine's date and time. Everything else takes `now` from
/// the injected `Clock`, so a bot on a manual clock (tests, the demo) never mixes in the wall
/// clock and the suite passes on any date.
const WALL_CLOCK_ALLOWED: [(&str, &str); 7] = [
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
    ("sandbox/slack/delivery.rs", "request signatures and event_time, as real Slack sends them"),
    ("sandbox/slack/web_api.rs", "call records"),
    // The fake Datadog records call times and reads date math (`now-15m`) against real time, as
    // Datadog does.
    ("sandbox/datadog/mod.rs", "call records, date math and request ids"),
];

#[test]
fn only_the_clock_reads_the_wall_clock() {
    let root = src();
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

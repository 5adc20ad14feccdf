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

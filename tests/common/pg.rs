//! A PostgreSQL database of its own for each test, from `DATABASE_URL`.
//!
//! Without `DATABASE_URL` the PostgreSQL tests skip, saying once how to run them; with
//! `IC_REQUIRE_POSTGRES=1` (CI) a missing database fails them instead.

use std::io::Write as _;
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};

static SKIP: Once = Once::new();
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh database, dropped (with every connection to it) when this is.
pub struct TestDb {
    pub url: String,
    name: String,
    admin_url: String,
}

/// Runs `f` on a thread of its own: the sync PostgreSQL client must not run on an async
/// runtime's threads.
fn off_runtime<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::spawn(f).join().expect("the database helper does not panic")
}

/// A plain connection; waits out a server restart (a test may restart it) for up to 20 s.
fn admin(url: &str) -> postgres::Client {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match postgres::Client::connect(url, postgres::NoTls) {
            Ok(client) => return client,
            Err(e) if std::time::Instant::now() > deadline => {
                panic!("DATABASE_URL is set but PostgreSQL does not answer at it: {e}")
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    }
}

/// A new empty database, or `None` (after saying so once) when no PostgreSQL is configured.
pub fn test_database() -> Option<TestDb> {
    let Ok(base) = std::env::var("DATABASE_URL") else {
        if std::env::var("IC_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
            panic!("IC_REQUIRE_POSTGRES=1 but DATABASE_URL is not set: the PostgreSQL tests must run");
        }
        SKIP.call_once(|| {
            // Written past the test harness's capture, so a plain `cargo test` shows it.
            let _ = writeln!(
                std::io::stderr(),
                "note: PostgreSQL tests skipped; run them with DATABASE_URL=postgres://postgres:postgres@127.0.0.1:5432/postgres cargo test (see docs/development.md)"
            );
        });
        return None;
    };
    let name = format!(
        "ic_test_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos()
    );
    let admin_url = base.clone();
    let create = name.clone();
    off_runtime(move || admin(&admin_url).batch_execute(&format!("CREATE DATABASE {create}")).unwrap());
    let mut url = url::Url::parse(&base).expect("DATABASE_URL is a URL");
    url.set_path(&format!("/{name}"));
    Some(TestDb { url: url.to_string(), name, admin_url: base })
}

impl TestDb {
    /// Runs SQL against the test's database from a plain client (assertions, sabotage).
    pub fn query(&self, sql: &str) -> Vec<postgres::Row> {
        let (url, sql) = (self.url.clone(), sql.to_string());
        off_runtime(move || admin(&url).query(sql.as_str(), &[]).unwrap())
    }

    /// Ends every session on the test's database, as a server restart would.
    pub fn terminate_sessions(&self) -> u64 {
        let rows = self.query(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()) t",
        );
        rows[0].get::<_, i64>(0) as u64
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        off_runtime(move || {
            let _ = admin(&url).batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        });
    }
}

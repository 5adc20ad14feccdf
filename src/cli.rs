//! Command-line interface: `serve`, `check-config`, and the tools built on the same parts.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

use secrecy::SecretString;

use crate::app::clock::SystemClock;
use crate::policy::{ConfigErrors, Policy};
use crate::slack::egress::EgressLimits;
use crate::slack::socket::SocketSettings;
use crate::startup::{RunningApp, Settings, SlackSettings};

/// Exit code for a bad policy file or bad input, like `promtool check config`.
pub const EXIT_INVALID: u8 = 2;

#[derive(Debug, Parser)]
#[command(name = "incident-commander", version, about = "On-call incident commander for Slack")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the bot.
    Serve(ServeArgs),
    /// Play a scenario with the whole bot against the built-in sandbox Slack and Datadog (no
    /// credentials needed) and print what people would see in Slack.
    #[cfg(feature = "sandbox")]
    Demo {
        /// Your own scenario file (see docs/demo.md); default: the built-in one.
        #[arg(long, value_name = "FILE")]
        scenario: Option<PathBuf>,
        /// The policy to play it against; default: the built-in demo policy.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Where to write the transcript, postmortems and the record of every call.
        #[arg(long, value_name = "DIR", default_value = "./demo-out")]
        out: PathBuf,
        /// Leave the sandbox and the bot running afterwards (Ctrl-C stops them).
        #[arg(long)]
        keep: bool,
    },
    /// Show what the bot would do with one alert payload (Slack event or message, Datadog,
    /// Alertmanager or Grafana webhook body), as JSON. Exits 2 on a payload it cannot read.
    Simulate {
        /// The payload file, or `-` for standard input.
        payload: PathBuf,
        /// The policy file (TOML).
        #[arg(long, env = "INCIDENT_COMMANDER_CONFIG", value_name = "FILE")]
        config: PathBuf,
        /// A data directory to read open incidents from (the bot must not be running on it).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Simulate at this time (RFC 3339) instead of now.
        #[arg(long, value_name = "TIME")]
        at: Option<DateTime<Utc>>,
    },
    /// Print an incident's postmortem draft (Markdown) or its whole record (JSON); with `--all`,
    /// every incident (`--format csv` gives one row each, for spreadsheets).
    Export {
        /// The incident, e.g. INC-3.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        incident: Option<String>,
        /// Every incident, oldest first.
        #[arg(long)]
        all: bool,
        #[arg(long, value_enum, default_value = "md")]
        format: ExportFormat,
        /// The bot's data directory (the bot must not be running on it).
        #[arg(long, env = "INCIDENT_COMMANDER_DATA", value_name = "DIR", default_value = "./data")]
        data_dir: PathBuf,
    },
    /// Move a stopped single-node deployment (a sled data directory) into PostgreSQL:
    /// incidents, the alert log, the inbox, the outbox, dedupe keys and timers.
    Migrate {
        /// The data directory of the stopped bot.
        #[arg(long, value_name = "DIR")]
        from_data_dir: PathBuf,
        /// The PostgreSQL database to move it into (postgres://user:password@host:port/db).
        #[arg(long, value_name = "URL")]
        to: String,
        /// Empty the target's incident-commander tables first; without it a target that holds
        /// data is refused.
        #[arg(long)]
        replace: bool,
        /// Verify the database server's certificate against this CA (PEM).
        #[arg(long, env = "DATABASE_CA_FILE", value_name = "FILE")]
        database_ca: Option<PathBuf>,
    },
    /// Validate a policy file and show who is on call; exits 2 listing every problem.
    CheckConfig {
        /// The policy file (TOML).
        file: PathBuf,
        /// Show the on-call people at this time (RFC 3339) instead of now.
        #[arg(long, value_name = "TIME")]
        at: Option<DateTime<Utc>>,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    /// The postmortem draft in Markdown.
    Md,
    /// The incident record, its durations and the postmortem, as JSON.
    Json,
    /// One row per incident: times, durations in seconds, roles, root cause, follow-ups.
    Csv,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The policy file (TOML).
    #[arg(long, env = "INCIDENT_COMMANDER_CONFIG", value_name = "FILE")]
    pub config: PathBuf,
    /// Where the embedded database lives (when no `--database-url` is given).
    #[arg(long, env = "INCIDENT_COMMANDER_DATA", value_name = "DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Keep everything in PostgreSQL instead (postgres://user:password@host:port/db): several
    /// replicas may share it, one of them leads.
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Connections each replica keeps to PostgreSQL.
    #[arg(long, env = "DATABASE_POOL", value_name = "N", default_value_t = 4)]
    pub database_pool: usize,
    /// Verify the PostgreSQL server's certificate against this CA (PEM); without it TLS only
    /// encrypts, as libpq's `sslmode=prefer` and `require` do.
    #[arg(long, env = "DATABASE_CA_FILE", value_name = "FILE")]
    pub database_ca: Option<PathBuf>,
    /// This replica's name in logs and in the database's leader record (default: host name and
    /// process id).
    #[arg(long, env = "REPLICA_NAME", value_name = "NAME")]
    pub replica_name: Option<String>,
    /// Address for the HTTP server (health, metrics, Slack HTTP mode, webhooks).
    #[arg(long, env = "LISTEN_ADDR", value_name = "ADDR", default_value = "0.0.0.0:3000")]
    pub listen: SocketAddr,
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file, at } => check_config(&file, at.unwrap_or_else(Utc::now)),
        Command::Export { incident, all: _, format, data_dir } => export(incident.as_deref(), format, &data_dir),
        #[cfg(feature = "sandbox")]
        Command::Demo { scenario, config, out, keep } => {
            if std::env::var_os("RUST_LOG").is_some() {
                init_tracing();
            }
            install_crypto_provider();
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build();
            let result = runtime
                .context("cannot start the async runtime")
                .and_then(|rt| rt.block_on(demo(scenario.as_deref(), config.as_deref(), &out, keep)));
            match result {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("demo failed: {e:#}");
                    ExitCode::from(EXIT_INVALID)
                }
            }
        }
        Command::Migrate { from_data_dir, to, replace, database_ca } => {
            init_tracing();
            install_crypto_provider();
            migrate(&from_data_dir, &to, replace, database_ca)
        }
        Command::Simulate { payload, config, data_dir, at } => {
            simulate(&payload, &config, data_dir.as_deref(), at.unwrap_or_else(Utc::now))
        }
        Command::Serve(args) => {
            init_tracing();
            install_crypto_provider();
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build();
            let result = runtime.context("cannot start the async runtime").and_then(|rt| rt.block_on(serve(args)));
            match result {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

pub use crate::tls::install_crypto_provider;

/// Human-readable logs on a terminal, JSON lines otherwise. `RUST_LOG` filters (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if std::io::stderr().is_terminal() {
        let _ = builder.try_init();
    } else {
        let _ = builder.json().flatten_event(true).with_current_span(true).try_init();
    }
}

/// Reads and validates a policy file; problems come back one per line.
pub fn load_policy(path: &Path) -> Result<Policy, Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| vec![format!("cannot read {}: {e}", path.display())])?;
    Policy::parse(&text).map_err(|ConfigErrors(errors)| errors.iter().map(|e| e.to_string()).collect())
}

fn check_config(path: &Path, at: DateTime<Utc>) -> ExitCode {
    // The tracker the policy names needs its credentials in the environment.
    let loaded = load_policy(path).and_then(|policy| {
        let tracker = policy.followups.tracker.as_ref();
        let env = crate::trackers::TrackerEnv::from_process();
        match tracker.map(|t| crate::trackers::problems(t, &env)).unwrap_or_default() {
            problems if problems.is_empty() => Ok(policy),
            problems => Err(problems.into_iter().map(|p| format!("followups.tracker: {p}")).collect()),
        }
    });
    match loaded {
        Ok(policy) => {
            print!("{}", policy_summary(&policy, path, at));
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for p in &problems {
                eprintln!("{p}");
            }
            eprintln!(
                "{}: {} problem{} found",
                path.display(),
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            );
            ExitCode::from(EXIT_INVALID)
        }
    }
}

fn simulate(payload: &Path, config: &Path, data_dir: Option<&Path>, at: DateTime<Utc>) -> ExitCode {
    let policy = match load_policy(config) {
        Ok(p) => p,
        Err(problems) => {
            for p in problems {
                eprintln!("{p}");
            }
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let text = if payload.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map(|_| s)
    } else {
        std::fs::read_to_string(payload)
    };
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot read {}: {e}", payload.display());
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let store = match data_dir {
        None => None,
        Some(dir) if !dir.join("db").exists() => {
            eprintln!("{} holds no incident-commander data", dir.display());
            return ExitCode::from(EXIT_INVALID);
        }
        Some(dir) => match crate::store::SledStore::open(dir) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("{e} (stop the bot, or simulate against a copy of the directory)");
                return ExitCode::from(EXIT_INVALID);
            }
        },
    };
    match crate::simulate::simulate(&text, &policy, store.as_ref().map(|s| s as &dyn crate::app::store::Store), at) {
        Ok(report) => {
            println!("{}", serde_json::to_string_pretty(&report).expect("JSON values serialize"));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot read {} as an alert: {e}", payload.display());
            ExitCode::from(EXIT_INVALID)
        }
    }
}

fn export(incident: Option<&str>, format: ExportFormat, data_dir: &Path) -> ExitCode {
    use crate::app::store::Store;
    let id = match incident.map(str::parse::<crate::domain::ids::IncidentId>).transpose() {
        Ok(id) => id,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    if !data_dir.join("db").exists() {
        eprintln!("{} holds no incident-commander data (pass --data-dir)", data_dir.display());
        return ExitCode::from(EXIT_INVALID);
    }
    let store = match crate::store::SledStore::open(data_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e} (stop the bot, or export from a copy of the directory)");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let incidents = match id {
        Some(id) => match store.get_incident(id) {
            Ok(Some(i)) => vec![i],
            Ok(None) => {
                eprintln!("{id} does not exist in {}", data_dir.display());
                return ExitCode::from(EXIT_INVALID);
            }
            Err(e) => {
                eprintln!("cannot read {id}: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => match store.all_incidents() {
            Ok(all) => all,
            Err(e) => {
                eprintln!("cannot read the incidents: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let record = |incident: &crate::domain::Incident| {
        let d = incident.durations();
        let secs = |t: Option<chrono::TimeDelta>| t.map(|t| t.num_seconds());
        serde_json::json!({
            "incident": incident,
            "durations_seconds": {
                "to_acknowledge": secs(d.to_acknowledge),
                "to_mitigate": secs(d.to_mitigate),
                "to_resolve": secs(d.to_resolve),
                "to_root_cause": secs(d.to_root_cause),
            },
            "postmortem_markdown": crate::domain::postmortem::postmortem_markdown(incident),
        })
    };
    match (format, id) {
        (ExportFormat::Md, _) => {
            let drafts: Vec<String> = incidents.iter().map(crate::domain::postmortem::postmortem_markdown).collect();
            print!("{}", drafts.join("\n---\n\n"));
        }
        (ExportFormat::Json, Some(_)) => {
            println!("{}", serde_json::to_string_pretty(&record(&incidents[0])).expect("JSON values serialize"));
        }
        (ExportFormat::Json, None) => {
            let all: Vec<serde_json::Value> = incidents.iter().map(record).collect();
            println!("{}", serde_json::to_string_pretty(&all).expect("JSON values serialize"));
        }
        (ExportFormat::Csv, _) => print!("{}", crate::domain::stats::incidents_csv(&incidents)),
    }
    ExitCode::SUCCESS
}

/// What `check-config` prints for a valid file.
pub fn policy_summary(policy: &Policy, path: &Path, at: DateTime<Utc>) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let list = |items: Vec<String>| if items.is_empty() { "none".to_string() } else { items.join(", ") };
    let _ = writeln!(out, "{}: OK", path.display());
    let _ =
        writeln!(out, "alert channels: {}", list(policy.slack.alert_channels.iter().map(|c| c.to_string()).collect()));
    let mut bots = vec!["Datadog's app".to_string()];
    bots.extend(policy.slack.alert_bots.iter().map(|b| b.to_string()));
    let _ = writeln!(out, "alert bots: {}", bots.join(", "));
    let _ = writeln!(out, "teams: {} (default: {})", policy.teams.len(), policy.default_team().name);
    for team in &policy.teams {
        let matchers: Vec<String> = team.matchers.iter().map(|m| m.pattern().to_string()).collect();
        let _ = writeln!(out, "  {}: channel {}, match {}", team.name, team.channel, list(matchers));
        let shift = team.rotation.shift_at(at);
        let tz = team.rotation.time_zone();
        let until = shift.ends_at.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z");
        let next = shift.next.map(|n| n.to_string()).unwrap_or_else(|| "nobody (one-member rotation)".into());
        let _ = writeln!(
            out,
            "    on call at {}: {} (commander) until {until}; next: {next} (investigator)",
            at.format("%Y-%m-%d %H:%M UTC"),
            shift.primary
        );
    }
    let _ = writeln!(
        out,
        "severity rules: {} (default SEV{})",
        policy.severity.rules.len(),
        policy.severity.default.level()
    );
    let _ = match &policy.followups.tracker {
        Some(t) => writeln!(out, "follow-ups: tickets in {} (reaction :{}:)", t.label(), policy.followups.emoji),
        None => writeln!(
            out,
            "follow-ups: timeline and postmortem only, no tracker (reaction :{}:)",
            policy.followups.emoji
        ),
    };
    out
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let policy = match load_policy(&args.config) {
        Ok(p) => p,
        Err(problems) => {
            for p in &problems {
                eprintln!("{p}");
            }
            eprintln!("{}: {} problem(s); the bot did not start", args.config.display(), problems.len());
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    };
    let slack = slack_settings_from_env(&policy)?;
    let store = open_store(&args).await?;
    let settings = Settings {
        policy,
        listen: args.listen,
        clock: Arc::new(SystemClock),
        tick_every: Duration::from_secs(1),
        slack,
        webhook_token: env_secret("WEBHOOK_TOKEN"),
        trackers: crate::trackers::TrackerEnv::from_process(),
        dashboard_token: env_secret("DASHBOARD_TOKEN"),
        datadog: datadog_settings_from_env()?,
    };
    let stop = shutdown_signal().context("cannot listen for SIGTERM")?;
    let app = RunningApp::start(settings, store).await?;
    tracing::info!(addr = %app.addr, "incident-commander is running");
    stop.await;
    tracing::info!("stopping: finishing the event in hand");
    app.shutdown().await?;
    tracing::info!("stopped cleanly");
    Ok(ExitCode::SUCCESS)
}

/// The store `serve` runs on: PostgreSQL with `--database-url`, sled in `--data-dir` otherwise.
async fn open_store(args: &ServeArgs) -> anyhow::Result<Arc<dyn crate::app::store::Store>> {
    let Some(url) = args.database_url.clone() else {
        return crate::store::open_embedded(&args.data_dir)
            .with_context(|| format!("cannot open the data directory {}", args.data_dir.display()));
    };
    #[cfg(feature = "postgres")]
    {
        let name = args.replica_name.clone().unwrap_or_else(default_replica_name);
        let options = crate::store::PgOptions {
            url,
            ca_file: args.database_ca.clone(),
            pool: args.database_pool.max(1),
            replication: crate::store::Replication::Elect { name },
        };
        // Connecting and migrating block: off the async threads.
        let store = tokio::task::spawn_blocking(move || crate::store::PgStore::open(&options))
            .await
            .context("the database opener stopped")?
            .context("cannot open the PostgreSQL store (DATABASE_URL)")?;
        Ok(Arc::new(store))
    }
    #[cfg(not(feature = "postgres"))]
    {
        let _ = url;
        anyhow::bail!(
            "--database-url (DATABASE_URL) needs a build with the `postgres` feature; this one has only the embedded store"
        )
    }
}

/// `<host>-<pid>`: tells replicas apart in logs and in `ic_leader`.
#[cfg(feature = "postgres")]
fn default_replica_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "replica".into());
    format!("{host}-{}", std::process::id())
}

/// `migrate`: reads the whole sled store and writes it into PostgreSQL in one transaction.
fn migrate(from: &Path, to: &str, replace: bool, ca_file: Option<PathBuf>) -> ExitCode {
    #[cfg(feature = "postgres")]
    {
        let started = std::time::Instant::now();
        let sled = match crate::store::SledStore::open(from) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("cannot open {} (stop the bot that uses it first): {e}", from.display());
                return ExitCode::FAILURE;
            }
        };
        let snapshot = match sled.snapshot() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("cannot read {}: {e}", from.display());
                return ExitCode::FAILURE;
            }
        };
        eprintln!("read {} from {}", snapshot.summary(), from.display());
        let options = crate::store::PgOptions { ca_file, ..crate::store::PgOptions::sole(to) };
        let pg = match crate::store::PgStore::open(&options) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("cannot open the target database: {e}");
                return ExitCode::FAILURE;
            }
        };
        match pg.is_empty() {
            Ok(false) if !replace => {
                eprintln!(
                    "the target database {} already holds incident-commander data; nothing was written (add --replace to empty it first)",
                    pg.describe()
                );
                return ExitCode::from(EXIT_INVALID);
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("cannot read the target database: {e}");
                return ExitCode::FAILURE;
            }
        }
        let wanted = snapshot.summary();
        if let Err(e) = pg.import(snapshot, replace) {
            eprintln!("the migration failed and was rolled back: {e}");
            return ExitCode::FAILURE;
        }
        match pg.snapshot() {
            Ok(written) if written.summary() == wanted => {
                println!(
                    "moved {wanted} into {} in {:.1} s; start the bot with --database-url",
                    pg.describe(),
                    started.elapsed().as_secs_f64()
                );
                ExitCode::SUCCESS
            }
            Ok(written) => {
                eprintln!("the target holds {} after the move, expected {wanted}", written.summary());
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("cannot read back the target database: {e}");
                ExitCode::FAILURE
            }
        }
    }
    #[cfg(not(feature = "postgres"))]
    {
        let _ = (from, to, replace, ca_file);
        eprintln!("migrate needs a build with the `postgres` feature");
        ExitCode::FAILURE
    }
}

#[cfg(feature = "sandbox")]
async fn demo(scenario: Option<&Path>, config: Option<&Path>, out: &Path, keep: bool) -> anyhow::Result<ExitCode> {
    let scenario_text = match scenario {
        Some(p) => std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
        None => crate::demo::DEFAULT_SCENARIO.to_string(),
    };
    let policy_text = match config {
        Some(p) => std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
        None => crate::demo::DEFAULT_POLICY.to_string(),
    };
    let scenario = crate::demo::Scenario::parse(&scenario_text)?;
    let run = crate::demo::run(&scenario, &policy_text).await?;
    println!("{}", run.log);
    println!("{}", run.transcript);
    let written = crate::demo::write_outputs(&run, out)?;
    println!("Played {} steps in {:.1} s. Wrote:", scenario.steps.len(), run.elapsed.as_secs_f64());
    for path in written {
        println!("  {}", path.display());
    }
    if keep {
        let stop = shutdown_signal().context("cannot listen for Ctrl-C")?;
        let h = &run.driver;
        println!("\nThe sandbox keeps running (Ctrl-C stops it):");
        println!("  Slack Web API  {}", h.sandbox.api_url());
        if let Some(dd) = &h.datadog {
            println!("  Datadog API    {}", dd.api_url());
        }
        println!("  the bot        http://{} (/healthz, /metrics, /webhooks/*)", h.app.addr);
        println!("  webhook token  {}", crate::sandbox::driver::WEBHOOK_TOKEN);
        println!(
            "  dashboard      http://{}/ (sign in with the token {})",
            h.app.addr,
            crate::sandbox::driver::DASHBOARD_TOKEN
        );
        stop.await;
    }
    run.driver.stop().await?;
    Ok(ExitCode::SUCCESS)
}

fn env_secret(name: &str) -> Option<SecretString> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty()).map(|v| SecretString::from(v.trim().to_string()))
}

/// Slack settings from `SLACK_BOT_TOKEN`, `SLACK_SIGNING_SECRET`, `SLACK_APP_TOKEN`, `SLACK_API_URL`.
fn slack_settings_from_env(policy: &Policy) -> anyhow::Result<Option<SlackSettings>> {
    let bot_token = env_secret("SLACK_BOT_TOKEN");
    let signing_secret = env_secret("SLACK_SIGNING_SECRET");
    let app_token = env_secret("SLACK_APP_TOKEN");
    let Some(bot_token) = bot_token else {
        if signing_secret.is_some() || app_token.is_some() {
            anyhow::bail!(
                "SLACK_BOT_TOKEN is not set: the bot needs it to post (SLACK_SIGNING_SECRET or SLACK_APP_TOKEN alone is not enough)"
            );
        }
        tracing::warn!("SLACK_BOT_TOKEN is not set: Slack is off; only webhooks, /healthz and /metrics work");
        return Ok(None);
    };
    if signing_secret.is_none() && app_token.is_none() {
        anyhow::bail!(
            "set SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (HTTP mode) so the bot can receive events"
        );
    }
    let api_url =
        std::env::var("SLACK_API_URL").ok().filter(|v| !v.is_empty()).unwrap_or_else(|| "https://slack.com/api".into());
    let socket = app_token.map(|app_token| SocketSettings {
        app_token,
        silence_limit: policy.slack.socket_silence_limit.to_std().unwrap_or(Duration::from_secs(600)),
        connections: 2,
        reconnect_seconds: 5,
    });
    Ok(Some(SlackSettings { api_url, bot_token, signing_secret, socket, limits: egress_limits_from_env()? }))
}

/// `SLACK_RATE_LIMITS` (`slack`, the default: Slack's published limits; `sandbox`: generous
/// limits and quick retries, for a local Slack emulator that does not pace) and
/// `SLACK_CALL_TIMEOUT` (how long one Web API call may take, e.g. `10s`, the default).
fn egress_limits_from_env() -> anyhow::Result<EgressLimits> {
    let mut limits = match std::env::var("SLACK_RATE_LIMITS").ok().as_deref().map(str::trim) {
        None | Some("") | Some("slack") => EgressLimits::slack(),
        Some("sandbox") => EgressLimits::fast(),
        Some(other) => anyhow::bail!("SLACK_RATE_LIMITS={other} is not known; use `slack` (the default) or `sandbox`"),
    };
    if let Ok(value) = std::env::var("SLACK_CALL_TIMEOUT")
        && !value.trim().is_empty()
    {
        let timeout = humantime::parse_duration(value.trim())
            .map_err(|e| anyhow::anyhow!("SLACK_CALL_TIMEOUT={value} is not a duration like `10s`: {e}"))?;
        anyhow::ensure!(!timeout.is_zero(), "SLACK_CALL_TIMEOUT must be longer than zero");
        limits.call_timeout = timeout;
    }
    Ok(limits)
}

/// Datadog settings from `DD_API_KEY`, `DD_APP_KEY`, `DD_SITE`, `DD_API_URL`. Without both keys
/// evidence is off (said once at startup). A bad Datadog setting never stops the bot: Slack
/// handling runs, and evidence is off with a warning that names the setting and the fix.
fn datadog_settings_from_env() -> anyhow::Result<Option<crate::startup::DatadogSettings>> {
    let (Some(api_key), Some(app_key)) = (env_secret("DD_API_KEY"), env_secret("DD_APP_KEY")) else {
        return Ok(None);
    };
    let site = std::env::var("DD_SITE").unwrap_or_else(|_| "datadoghq.com".into());
    let api_url = std::env::var("DD_API_URL").ok().filter(|u| !u.trim().is_empty());
    if let Some(url) = &api_url
        && url::Url::parse(url).map(|u| !matches!(u.scheme(), "http" | "https")).unwrap_or(true)
    {
        tracing::warn!(DD_API_URL = url.as_str(), "DD_API_URL is not an http(s) URL; Datadog evidence is off");
        return Ok(None);
    }
    let site = match crate::datadog::Site::resolve(&site, api_url.as_deref()) {
        Ok(site) => site,
        Err(e) => {
            tracing::warn!(error = e.as_str(), "Datadog evidence is off until DD_SITE is fixed");
            return Ok(None);
        }
    };
    Ok(Some(crate::startup::DatadogSettings {
        site,
        api_key,
        app_key,
        budget_per_hour: crate::datadog::SPANS_REQUESTS_PER_HOUR,
    }))
}

/// Registers for SIGTERM and Ctrl-C at once, so a signal that arrives as soon as the bot logs
/// "listening" is never missed; the returned future completes on the first of them.
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = interrupt.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

//! The PostgreSQL backend of [`Store`], for replicated deployments: several replicas share one
//! database, every replica puts events in the shared inbox, and one elected leader does the rest.
//!
//! - **Schema**: versioned migrations in [`MIGRATIONS`], applied at start under an advisory lock
//!   (replicas starting together migrate once); a database whose schema is newer than this build
//!   is refused. Records are the same versioned JSON envelopes the other backends write, kept in
//!   `TEXT` columns: `JSONB` refuses the `\u0000` escape an untrusted alert may carry, and an alert
//!   must never be lost to a column type.
//! - **Connections**: a small pool of worker threads, each owning one connection (the sync
//!   `postgres` client runs its own runtime, so it must never be driven from the caller's async
//!   threads); a connection idle for a while is checked before use and replaced when dead, so a
//!   database restart costs the callers one retry at most.
//! - **Election** (`Replication::Elect`): a dedicated session campaigns for a session-level
//!   advisory lock; the holder bumps the leadership *term* in `ic_leader` and is the leader while
//!   the session lives. The database ends a dead replica's session, and with it the lock, at once
//!   for a killed process and within the server-side TCP keepalive (about 8 s) for a dead host.
//! - **Fencing**: every leader's write (processing steps, deliveries, dedupe expiry) checks, in its
//!   own transaction and under a share lock on `ic_leader`, that the term is still this replica's.
//!   A new leader's term bump waits for those locks, so once it is done no write of the deposed
//!   leader can commit. A leader that cannot reach the database for [`LEASE`] steps down on its
//!   own, so its egress stops before another replica can be elected.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Config, GenericClient, Transaction};
use tokio::sync::watch;

use super::Snapshot;
use super::records::{Versioned, decode, encode};
use crate::app::inbox::{InboxEvent, InboxSeq};
use crate::app::outbox::{Delivery, MessageKey, OutboxEntry, OutboxSeq};
use crate::app::store::{
    Acceptance, Commit, DeadLetter, DedupeKey, LoggedAlert, Place, Role, Store, StoreError, ThreadMessage,
};
use crate::domain::alert::Fingerprint;
use crate::domain::ids::{ChannelId, IncidentId};
use crate::domain::incident::Incident;

const BACKEND: &str = "postgresql";

/// The schema, one migration per version, in order. A released migration is never edited: a
/// change is a new entry.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "incidents, inbox, outbox, alert log, leadership",
    r#"
CREATE TABLE ic_meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL);
CREATE TABLE ic_incidents (id BIGINT PRIMARY KEY, open BOOLEAN NOT NULL, record TEXT NOT NULL);
CREATE INDEX ic_incidents_open ON ic_incidents (id) WHERE open;
CREATE TABLE ic_incident_fingerprints (fingerprint TEXT PRIMARY KEY, incident BIGINT NOT NULL);
CREATE TABLE ic_incident_places (place TEXT PRIMARY KEY, incident BIGINT NOT NULL);
CREATE TABLE ic_inbox (seq BIGSERIAL PRIMARY KEY, event TEXT NOT NULL, accepted_at TIMESTAMPTZ NOT NULL DEFAULT now());
CREATE TABLE ic_dedupe_keys (key TEXT PRIMARY KEY, until TIMESTAMPTZ NOT NULL);
CREATE INDEX ic_dedupe_keys_until ON ic_dedupe_keys (until);
CREATE TABLE ic_outbox (seq BIGSERIAL PRIMARY KEY, entry TEXT NOT NULL);
CREATE TABLE ic_message_refs (key TEXT PRIMARY KEY, delivery TEXT NOT NULL);
CREATE TABLE ic_dead_letters (seq BIGINT PRIMARY KEY, reason TEXT NOT NULL, event TEXT NOT NULL);
CREATE TABLE ic_alerts (id BIGSERIAL PRIMARY KEY, message TEXT, record TEXT NOT NULL);
CREATE INDEX ic_alerts_message ON ic_alerts (message, id) WHERE message IS NOT NULL;
CREATE TABLE ic_thread_messages (place TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE ic_leader (id INT PRIMARY KEY CHECK (id = 1), term BIGINT NOT NULL, holder TEXT, since TIMESTAMPTZ);
INSERT INTO ic_leader (id, term) VALUES (1, 0);
"#,
)];

/// The tables holding the bot's data, emptied by a migration told to replace what is there.
const DATA_TABLES: &str = "ic_meta, ic_incidents, ic_incident_fingerprints, ic_incident_places, ic_inbox, \
     ic_dedupe_keys, ic_outbox, ic_message_refs, ic_dead_letters, ic_alerts, ic_thread_messages";

/// Advisory lock keys (one namespace for this application: "ic" in the high bits).
const MIGRATION_LOCK: i64 = 0x6963_0000_0000_0001;
const LEADER_LOCK: i64 = 0x6963_0000_0000_0002;
/// The channel `NOTIFY`ed when events enter the inbox.
const INBOX_CHANNEL: &str = "ic_inbox";

/// How often a follower asks for the leader's lock, and the leader checks its session.
const CAMPAIGN_EVERY: Duration = Duration::from_millis(500);
/// A leader that has not heard from its lock session for this long steps down.
pub const LEASE: Duration = Duration::from_secs(2);
/// A pooled connection unused for this long is checked before it is used again.
const CHECK_IDLE_AFTER: Duration = Duration::from_secs(1);
/// How long to wait for a connection (and for a check of an idle one).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections by default.
pub const DEFAULT_POOL: usize = 4;

/// How a store relates to the other processes on the same database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replication {
    /// This process is the only writer (tests, `migrate`): no election, no fencing.
    Sole,
    /// One of several replicas: campaign for leadership under this name (logged and kept in
    /// `ic_leader.holder`), fence every leader's write.
    Elect { name: String },
}

/// What to open.
#[derive(Debug, Clone)]
pub struct PgOptions {
    pub url: String,
    /// Verify the server's certificate against this CA (PEM); without it TLS only encrypts.
    pub ca_file: Option<std::path::PathBuf>,
    pub pool: usize,
    pub replication: Replication,
}

impl PgOptions {
    pub fn sole(url: &str) -> PgOptions {
        PgOptions { url: url.to_string(), ca_file: None, pool: DEFAULT_POOL, replication: Replication::Sole }
    }
}

fn unavailable(message: impl Into<String>) -> StoreError {
    StoreError::Unavailable { backend: BACKEND, message: message.into() }
}

fn db_error(e: postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => unavailable(format!("{} ({})", db.message(), db.code().code())),
        None => unavailable(e.to_string()),
    }
}

fn corrupt(key: impl std::fmt::Display, reason: String) -> StoreError {
    StoreError::Corrupt { key: key.to_string(), reason }
}

fn text<T: Versioned>(value: &T) -> String {
    String::from_utf8(encode(value)).expect("records are JSON, which is UTF-8")
}

fn read<T: Versioned>(what: impl std::fmt::Display, record: &str) -> Result<T, StoreError> {
    decode(record.as_bytes()).map_err(|e| corrupt(what, e))
}

fn seq(n: i64) -> u64 {
    n.max(0) as u64
}

fn message_place(channel: &ChannelId, ts: &str) -> String {
    format!("{channel}/{ts}")
}

/// The index key of a place, the same as sled's: `channel/ts`, or `channel/` for a channel.
fn place_key(place: &Place) -> String {
    match place {
        Place::Message { channel, ts } => message_place(channel, ts),
        Place::Channel(channel) => message_place(channel, ""),
    }
}

/// Parses the URL and sets what every connection needs.
fn config(url: &str) -> Result<Config, StoreError> {
    let mut config: Config = url.parse().map_err(|e: postgres::Error| {
        unavailable(format!(
            "DATABASE_URL is not a PostgreSQL connection string (postgres://user:password@host:port/db): {e}"
        ))
    })?;
    if config.get_application_name().is_none() {
        config.application_name("incident-commander");
    }
    config.connect_timeout(CONNECT_TIMEOUT).keepalives(true).keepalives_idle(Duration::from_secs(5));
    Ok(config)
}

/// Opens connections, with TLS the way libpq does it: `sslmode=prefer` (the default) and
/// `require` encrypt without checking the server's certificate; with a CA file (`--database-ca`)
/// the certificate must chain to it and name the host.
#[derive(Clone)]
struct Connector {
    config: Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
}

impl Connector {
    fn new(url: &str, ca_file: Option<&std::path::Path>) -> Result<Connector, StoreError> {
        let provider = rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| unavailable(format!("TLS for PostgreSQL: {e}")))?;
        let tls = match ca_file {
            Some(path) => {
                use rustls::pki_types::pem::PemObject as _;
                let mut roots = rustls::RootCertStore::empty();
                let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
                    .map_err(|e| unavailable(format!("cannot read the database CA file {}: {e}", path.display())))?;
                for cert in certs {
                    let cert =
                        cert.map_err(|e| unavailable(format!("the database CA file {}: {e}", path.display())))?;
                    roots
                        .add(cert)
                        .map_err(|e| unavailable(format!("the database CA file {}: {e}", path.display())))?;
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
                .with_no_client_auth(),
        };
        Ok(Connector { config: config(url)?, tls: tokio_postgres_rustls::MakeRustlsConnect::new(tls) })
    }

    fn connect(&self) -> Result<Client, StoreError> {
        self.config.connect(self.tls.clone()).map_err(|e| {
            let hosts = self.config.get_hosts().iter().map(|h| format!("{h:?}")).collect::<Vec<_>>().join(",");
            unavailable(format!("cannot connect to PostgreSQL ({hosts}): {e}"))
        })
    }

    /// Where the database is, without the password, for logs.
    fn describe(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(postgres::config::Host::Tcp(h)) => h.clone(),
            #[cfg(unix)]
            Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!("{host}:{port}/{}", self.config.get_dbname().unwrap_or("postgres"))
    }
}

/// One pooled connection, reconnected when it dies.
struct Conn {
    client: Option<Client>,
    last_used: Instant,
}

impl Conn {
    fn get(&mut self, connector: &Connector) -> Result<&mut Client, StoreError> {
        let stale = self.last_used.elapsed() > CHECK_IDLE_AFTER;
        if let Some(client) = &mut self.client
            && (client.is_closed() || (stale && client.is_valid(CONNECT_TIMEOUT).is_err()))
        {
            self.client = None;
        }
        self.last_used = Instant::now();
        if self.client.is_none() {
            self.client = Some(connector.connect()?);
        }
        Ok(self.client.as_mut().expect("connected above"))
    }

    fn after(&mut self) {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
        }
    }
}

type Job = Box<dyn FnOnce(&mut Conn, &Connector) + Send>;

/// Leadership, shared by the campaign, the watchdog and the writes.
struct Leadership {
    /// Whether this process takes part in an election (otherwise it is the sole writer).
    elect: bool,
    /// This replica's term while it leads; 0 when it does not.
    term: AtomicU64,
    /// When the lock session last answered, as ms since `epoch`.
    last_ok_ms: AtomicU64,
    epoch: Instant,
    role: watch::Sender<Role>,
    stop: AtomicBool,
    /// Bumped on every inbox notification from the database.
    inbox: watch::Sender<u64>,
}

impl Leadership {
    /// Checks, inside a leader's write, that this replica still holds its term.
    fn fence(&self, tx: &mut Transaction<'_>) -> Result<(), StoreError> {
        if !self.elect {
            return Ok(());
        }
        let mine = self.term.load(Ordering::SeqCst);
        if mine == 0 {
            return Err(StoreError::Fenced { reason: "another replica leads, or the election is not won yet".into() });
        }
        let current: i64 =
            tx.query_one("SELECT term FROM ic_leader WHERE id = 1 FOR SHARE", &[]).map_err(db_error)?.get(0);
        if seq(current) != mine {
            return Err(StoreError::Fenced {
                reason: format!("term {mine} ended, the leader now holds term {current}"),
            });
        }
        Ok(())
    }

    fn stamp(&self) {
        self.last_ok_ms.store(self.epoch.elapsed().as_millis() as u64, Ordering::SeqCst);
    }

    fn step_down(&self, why: &str) {
        if self.term.swap(0, Ordering::SeqCst) != 0 {
            tracing::warn!(reason = why, "stepping down: no longer the leader");
        }
        self.role.send_if_modified(|r| std::mem::replace(r, Role::Follower) != Role::Follower);
    }
}

/// The PostgreSQL store. Cheap to share; dropping the last handle stops its threads and, when
/// it leads, gives up the leadership.
pub struct PgStore {
    jobs: Mutex<mpsc::Sender<Job>>,
    leadership: Arc<Leadership>,
    described: String,
    /// Processing steps committed without waiting for the disk since the last [`Store::persist`].
    unflushed: Arc<AtomicBool>,
    /// Inbox events consumed without effects and not deleted yet (see [`Store::commit`]).
    consumed: Mutex<Consumed>,
    /// Held while consumed events are being deleted: one delete at a time, so two transactions
    /// never delete the same rows (in different orders, which could deadlock).
    deleting: Mutex<()>,
}

/// Most inbox events consumed without effects that wait for one delete.
const CONSUMED_BATCH: usize = 256;

/// Deletes the inbox rows of events consumed without effects (see [`Consumed`]).
fn delete_inbox_rows(tx: &mut Transaction<'_>, seqs: &[i64]) -> Result<(), StoreError> {
    tx.execute("DELETE FROM ic_inbox WHERE seq = ANY($1)", &[&seqs]).map_err(db_error)?;
    Ok(())
}

/// Chatter and other events that change nothing are most of a busy workspace's traffic. Their
/// rows are deleted together, with the next step that writes or once [`CONSUMED_BATCH`] wait,
/// rather than each in a transaction of its own (about five round trips an event); until then
/// the inbox's reads skip them. Lost to a crash or a change of leader, they are handled again,
/// to the same nothing, as on sled.
#[derive(Default)]
struct Consumed {
    /// The leader's term they were consumed in: a replica that lost it forgets them.
    term: u64,
    seqs: Vec<i64>,
}

impl PgStore {
    /// Connects, migrates the schema, starts the pool and, for a replica, the campaign.
    pub fn open(options: &PgOptions) -> Result<PgStore, StoreError> {
        let connector = Connector::new(&options.url, options.ca_file.as_deref())?;
        let mut first = connector.connect()?;
        migrate(&mut first)?;
        let elect = matches!(options.replication, Replication::Elect { .. });
        let leadership = Arc::new(Leadership {
            elect,
            term: AtomicU64::new(0),
            last_ok_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            role: watch::channel(if elect { Role::Follower } else { Role::Leader }).0,
            stop: AtomicBool::new(false),
            inbox: watch::channel(0).0,
        });
        let (jobs, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        // The first worker keeps the connection that migrated; the others connect when used.
        let mut first = Some(first);
        for n in 0..options.pool.max(1) {
            let (rx, connector) = (rx.clone(), connector.clone());
            let conn = Conn { client: first.take(), last_used: Instant::now() };
            spawn(&format!("pg-{n}"), move || worker(rx, conn, connector))?;
        }
        if let Replication::Elect { name } = &options.replication {
            let (l, c, name) = (leadership.clone(), connector.clone(), name.clone());
            spawn("pg-campaign", move || campaign(&c, &l, &name))?;
            let l = leadership.clone();
            spawn("pg-lease", move || watch_lease(&l))?;
            let (l, c) = (leadership.clone(), connector.clone());
            spawn("pg-listen", move || listen(&c, &l))?;
        }
        tracing::info!(
            database = connector.describe().as_str(),
            pool = options.pool,
            replica = elect,
            "PostgreSQL store open"
        );
        Ok(PgStore {
            jobs: Mutex::new(jobs),
            leadership,
            described: connector.describe(),
            unflushed: Arc::new(AtomicBool::new(false)),
            consumed: Mutex::new(Consumed::default()),
            deleting: Mutex::new(()),
        })
    }

    /// Where the database is (host:port/db), for logs and errors.
    pub fn describe(&self) -> &str {
        &self.described
    }

    /// Runs `f` on a pooled connection and waits for its answer.
    fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |conn, connector| {
            let result = conn.get(connector).and_then(f);
            conn.after();
            let _ = tx.send(result);
        });
        let sent = self.jobs.lock().unwrap_or_else(|p| p.into_inner()).send(job);
        sent.map_err(|_| unavailable("the database threads have stopped"))?;
        rx.recv().map_err(|_| unavailable("a database thread stopped"))?
    }

    /// Runs `f` in a transaction and commits it.
    fn transaction<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.run(move |client| {
            let mut tx = client.transaction().map_err(db_error)?;
            let out = f(&mut tx)?;
            tx.commit().map_err(db_error)?;
            Ok(out)
        })
    }

    /// A leader's write: [`PgStore::transaction`], fenced by the term.
    fn leader_transaction<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let leadership = self.leadership.clone();
        self.transaction(move |tx| {
            leadership.fence(tx)?;
            f(tx)
        })
    }

    /// The events consumed without effects and not deleted yet, in this replica's current term.
    fn consumed(&self) -> std::sync::MutexGuard<'_, Consumed> {
        let mut consumed = self.consumed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let term = self.leadership.term.load(Ordering::SeqCst);
        if consumed.term != term {
            *consumed = Consumed { term, seqs: Vec::new() };
        }
        consumed
    }

    /// The consumed events waiting to be deleted. They stay in the list, so the inbox's reads
    /// skip them, until [`PgStore::forget_deleted`] says their delete committed; a delete that
    /// fails loses nothing: the next one takes them again.
    fn consumed_waiting(&self) -> Vec<i64> {
        self.consumed().seqs.clone()
    }

    /// Drops `deleted` (an earlier [`PgStore::consumed_waiting`]) from the list once their rows
    /// are gone.
    fn forget_deleted(&self, deleted: &[i64]) {
        let mut consumed = self.consumed();
        if consumed.seqs.starts_with(deleted) {
            consumed.seqs.drain(..deleted.len());
        } else {
            consumed.seqs.retain(|seq| !deleted.contains(seq));
        }
    }

    /// Deletes the consumed events waiting, in a leader's transaction of their own. The caller
    /// holds `deleting`.
    fn delete_consumed(&self) -> Result<(), StoreError> {
        let seqs = self.consumed_waiting();
        if seqs.is_empty() {
            return Ok(());
        }
        let deleted = seqs.clone();
        self.leader_transaction(move |tx| {
            tx.batch_execute("SET LOCAL synchronous_commit TO OFF").map_err(db_error)?;
            delete_inbox_rows(tx, &seqs)
        })?;
        self.forget_deleted(&deleted);
        Ok(())
    }

    /// Whether the bot's tables hold anything.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        self.run(|c| {
            let row = c
                .query_one(
                    "SELECT (SELECT count(*) FROM ic_incidents) + (SELECT count(*) FROM ic_inbox) \
                     + (SELECT count(*) FROM ic_outbox) + (SELECT count(*) FROM ic_alerts) \
                     + (SELECT count(*) FROM ic_dedupe_keys)",
                    &[],
                )
                .map_err(db_error)?;
            Ok(row.get::<_, i64>(0) == 0)
        })
    }

    /// Writes everything in `snapshot` in one transaction, keeping sequence numbers; with
    /// `replace`, empties the bot's tables first. Refuses a database that holds data otherwise.
    pub fn import(&self, snapshot: Snapshot, replace: bool) -> Result<(), StoreError> {
        self.transaction(move |tx| {
            if replace {
                tx.batch_execute(&format!("TRUNCATE {DATA_TABLES}")).map_err(db_error)?;
            } else {
                let n: i64 = tx
                    .query_one(
                        "SELECT (SELECT count(*) FROM ic_incidents) + (SELECT count(*) FROM ic_inbox) \
                         + (SELECT count(*) FROM ic_outbox) + (SELECT count(*) FROM ic_alerts)",
                        &[],
                    )
                    .map_err(db_error)?
                    .get(0);
                if n > 0 {
                    return Err(unavailable("the target database already holds incident-commander data"));
                }
            }
            for incident in &snapshot.incidents {
                write_incident(tx, incident)?;
            }
            for (n, event) in &snapshot.inbox {
                tx.execute("INSERT INTO ic_inbox (seq, event) VALUES ($1, $2)", &[&(*n as i64), &text(event)])
                    .map_err(db_error)?;
            }
            for (key, until) in &snapshot.dedupe_keys {
                tx.execute("INSERT INTO ic_dedupe_keys (key, until) VALUES ($1, $2)", &[key, until]).map_err(db_error)?;
            }
            for (n, entry) in &snapshot.outbox {
                tx.execute("INSERT INTO ic_outbox (seq, entry) VALUES ($1, $2)", &[&(*n as i64), &text(entry)])
                    .map_err(db_error)?;
            }
            for (key, delivery) in &snapshot.message_refs {
                tx.execute("INSERT INTO ic_message_refs (key, delivery) VALUES ($1, $2)", &[key, &text(delivery)])
                    .map_err(db_error)?;
            }
            for dead in &snapshot.dead_letters {
                tx.execute(
                    "INSERT INTO ic_dead_letters (seq, reason, event) VALUES ($1, $2, $3)",
                    &[&(dead.seq as i64), &dead.reason, &text(&dead.event)],
                )
                .map_err(db_error)?;
            }
            for (id, alert) in &snapshot.alerts {
                let message = alert.alert.slack.as_ref().map(|m| message_place(&m.channel, &m.ts));
                tx.execute(
                    "INSERT INTO ic_alerts (id, message, record) VALUES ($1, $2, $3)",
                    &[&(*id as i64), &message, &text(alert)],
                )
                .map_err(db_error)?;
            }
            for m in &snapshot.thread_messages {
                tx.execute(
                    "INSERT INTO ic_thread_messages (place, record) VALUES ($1, $2)",
                    &[&message_place(&m.channel, &m.ts), &text(m)],
                )
                .map_err(db_error)?;
            }
            tx.execute(
                "INSERT INTO ic_meta (key, value) VALUES ('next_incident_id', $1) \
                 ON CONFLICT (key) DO UPDATE SET value = GREATEST(ic_meta.value, EXCLUDED.value)",
                &[&(snapshot.next_incident_id as i64)],
            )
            .map_err(db_error)?;
            // Sequences continue after the imported numbers.
            tx.batch_execute(
                "SELECT setval('ic_inbox_seq_seq', GREATEST((SELECT max(seq) FROM ic_inbox), (SELECT max(seq) FROM ic_dead_letters), 1)); \
                 SELECT setval('ic_outbox_seq_seq', GREATEST((SELECT max(seq) FROM ic_outbox), 1)); \
                 SELECT setval('ic_alerts_id_seq', GREATEST((SELECT max(id) FROM ic_alerts), 1));",
            )
            .map_err(db_error)?;
            Ok(())
        })
    }

    /// Everything the store holds (see [`Snapshot`]).
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        self.run(|c| {
            let mut s = Snapshot::default();
            for row in c.query("SELECT id, record FROM ic_incidents ORDER BY id", &[]).map_err(db_error)? {
                s.incidents.push(read(format!("incident {}", row.get::<_, i64>(0)), row.get(1))?);
            }
            for row in c.query("SELECT seq, event FROM ic_inbox ORDER BY seq", &[]).map_err(db_error)? {
                let n = seq(row.get(0));
                s.inbox.push((n, read(format!("inbox event {n}"), row.get(1))?));
            }
            for row in c.query("SELECT seq, entry FROM ic_outbox ORDER BY seq", &[]).map_err(db_error)? {
                let n = seq(row.get(0));
                s.outbox.push((n, read(format!("outbox entry {n}"), row.get(1))?));
            }
            for row in c.query("SELECT key, until FROM ic_dedupe_keys ORDER BY key", &[]).map_err(db_error)? {
                s.dedupe_keys.push((row.get(0), row.get(1)));
            }
            for row in c.query("SELECT key, delivery FROM ic_message_refs ORDER BY key", &[]).map_err(db_error)? {
                let key: String = row.get(0);
                let delivery = read(format!("message ref {key}"), row.get(1))?;
                s.message_refs.push((key, delivery));
            }
            s.dead_letters = dead_letters(c)?;
            for row in c.query("SELECT id, record FROM ic_alerts ORDER BY id", &[]).map_err(db_error)? {
                let id = seq(row.get(0));
                s.alerts.push((id, read(format!("alert {id}"), row.get(1))?));
            }
            for row in c.query("SELECT place, record FROM ic_thread_messages ORDER BY place", &[]).map_err(db_error)? {
                s.thread_messages.push(read(format!("thread message {}", row.get::<_, String>(0)), row.get(1))?);
            }
            s.next_incident_id = next_incident_number(c)?;
            Ok(s)
        })
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // The pool's threads end when the job channel closes; the campaign, the lease watch and
        // the listener see this flag.
        self.leadership.stop.store(true, Ordering::SeqCst);
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), StoreError> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .map(|_| ())
        .map_err(|e| unavailable(format!("cannot start a database thread: {e}")))
}

fn worker(jobs: Arc<Mutex<mpsc::Receiver<Job>>>, mut conn: Conn, connector: Connector) {
    loop {
        let job = {
            let rx = jobs.lock().unwrap_or_else(|p| p.into_inner());
            rx.recv()
        };
        match job {
            Ok(job) => job(&mut conn, &connector),
            Err(_) => return,
        }
    }
}

/// Applies the migrations this database lacks, one transaction each, under an advisory lock so
/// replicas starting together do it once. Refuses a schema newer than this build knows.
pub fn migrate(client: &mut Client) -> Result<(), StoreError> {
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).map_err(db_error)?;
    let result = (|| {
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS ic_schema_migrations \
                 (version INT PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
            )
            .map_err(db_error)?;
        let current: i32 = client
            .query_one("SELECT COALESCE(max(version), 0) FROM ic_schema_migrations", &[])
            .map_err(db_error)?
            .get(0);
        let known = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
        if current > known {
            return Err(corrupt(
                "schema version",
                format!(
                    "the database's schema is version {current}, newer than this build knows ({known}); upgrade the binary"
                ),
            ));
        }
        for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
            let mut tx = client.transaction().map_err(db_error)?;
            tx.batch_execute(sql).map_err(db_error)?;
            tx.execute("INSERT INTO ic_schema_migrations (version, name) VALUES ($1, $2)", &[version, name])
                .map_err(db_error)?;
            tx.commit().map_err(db_error)?;
            tracing::info!(version, name, "database schema migrated");
        }
        Ok(())
    })();
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
    result
}

/// The schema version of the database at `url` (0 before the first migration).
pub fn schema_version(url: &str) -> Result<i32, StoreError> {
    let mut client = Connector::new(url, None)?.connect()?;
    let exists: bool =
        client.query_one("SELECT to_regclass('ic_schema_migrations') IS NOT NULL", &[]).map_err(db_error)?.get(0);
    if !exists {
        return Ok(0);
    }
    Ok(client.query_one("SELECT COALESCE(max(version), 0) FROM ic_schema_migrations", &[]).map_err(db_error)?.get(0))
}

/// Sleeps `d` in short steps, returning early (true) when the store stops.
fn pause(leadership: &Leadership, d: Duration) -> bool {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if leadership.stop.load(Ordering::SeqCst) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50).min(until.saturating_duration_since(Instant::now())));
    }
    leadership.stop.load(Ordering::SeqCst)
}

/// The campaign: holds a session that asks for the leader's lock until it gets it, then keeps
/// the session alive while leading. Runs until the store stops.
fn campaign(connector: &Connector, leadership: &Leadership, name: &str) {
    while !leadership.stop.load(Ordering::SeqCst) {
        let mut session = match connector.connect() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach the database to campaign for leadership; retrying");
                if pause(leadership, CAMPAIGN_EVERY * 2) {
                    return;
                }
                continue;
            }
        };
        // The server notices a vanished host through these keepalives (about 8 s), and ends the
        // session, which releases the lock for another replica.
        let keepalive = session.batch_execute(
            "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 1; SET tcp_keepalives_count = 3",
        );
        if let Err(e) = keepalive {
            tracing::debug!(error = %e, "the server did not take keepalive settings");
        }
        lead_or_follow(&mut session, leadership, name);
        leadership.step_down("the database session for the election ended");
    }
}

/// One session's part of the campaign; returns when the session fails or the store stops.
fn lead_or_follow(session: &mut Client, leadership: &Leadership, name: &str) {
    loop {
        if leadership.stop.load(Ordering::SeqCst) {
            let _ = session.execute("SELECT pg_advisory_unlock($1)", &[&LEADER_LOCK]);
            return;
        }
        let won: bool = match session.query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK]) {
            Ok(row) => row.get(0),
            Err(e) => {
                tracing::warn!(error = %e, "the election session failed");
                return;
            }
        };
        leadership.stamp();
        if won {
            let bumped = session.query_one(
                "UPDATE ic_leader SET term = term + 1, holder = $1, since = now() WHERE id = 1 RETURNING term",
                &[&name],
            );
            let term = match bumped {
                Ok(row) => seq(row.get(0)),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start a leadership term");
                    return;
                }
            };
            leadership.stamp();
            leadership.term.store(term, Ordering::SeqCst);
            leadership.role.send_replace(Role::Leader);
            tracing::info!(term, replica = name, "became the leader");
            loop {
                if pause(leadership, CAMPAIGN_EVERY) {
                    let _ = session.execute("SELECT pg_advisory_unlock($1)", &[&LEADER_LOCK]);
                    return;
                }
                if session.simple_query("SELECT 1").is_err() {
                    return;
                }
                if leadership.term.load(Ordering::SeqCst) != term {
                    // The lease ran out while the session was slow: give the lock back and
                    // campaign again from the start.
                    return;
                }
                leadership.stamp();
            }
        }
        leadership.role.send_if_modified(|r| std::mem::replace(r, Role::Follower) != Role::Follower);
        if pause(leadership, CAMPAIGN_EVERY) {
            return;
        }
    }
}

/// Steps down a leader whose lock session has not answered within [`LEASE`].
fn watch_lease(leadership: &Leadership) {
    while !pause(leadership, Duration::from_millis(100)) {
        if leadership.term.load(Ordering::SeqCst) == 0 {
            continue;
        }
        let last = Duration::from_millis(leadership.last_ok_ms.load(Ordering::SeqCst));
        if leadership.epoch.elapsed().saturating_sub(last) > LEASE {
            leadership.step_down("the database did not answer the leader's session within the lease");
        }
    }
}

/// Listens for inbox notifications from every replica and passes them on.
fn listen(connector: &Connector, leadership: &Leadership) {
    while !leadership.stop.load(Ordering::SeqCst) {
        let mut client = match connector.connect() {
            Ok(c) => c,
            Err(_) => {
                if pause(leadership, CAMPAIGN_EVERY * 2) {
                    return;
                }
                continue;
            }
        };
        if client.batch_execute(&format!("LISTEN {INBOX_CHANNEL}")).is_err() {
            continue;
        }
        // Anything that arrived while not listening is looked at now.
        leadership.inbox.send_modify(|n| *n += 1);
        loop {
            if leadership.stop.load(Ordering::SeqCst) {
                return;
            }
            let mut got = 0u64;
            let failed = {
                let mut notifications = client.notifications();
                let mut iter = notifications.timeout_iter(CAMPAIGN_EVERY);
                loop {
                    match iter.next() {
                        Ok(Some(_)) => got += 1,
                        Ok(None) => break false,
                        Err(_) => break true,
                    }
                }
            };
            if got > 0 {
                leadership.inbox.send_modify(|n| *n += got);
            }
            if failed || client.is_closed() {
                break;
            }
        }
    }
}

fn next_incident_number(c: &mut impl GenericClient) -> Result<u64, StoreError> {
    let row = c.query_opt("SELECT value FROM ic_meta WHERE key = 'next_incident_id'", &[]).map_err(db_error)?;
    Ok(row.map(|r| seq(r.get(0))).unwrap_or(1).max(1))
}

fn dead_letters(c: &mut impl GenericClient) -> Result<Vec<DeadLetter>, StoreError> {
    let rows = c.query("SELECT seq, reason, event FROM ic_dead_letters ORDER BY seq", &[]).map_err(db_error)?;
    rows.iter()
        .map(|row| {
            let n = seq(row.get(0));
            Ok(DeadLetter { seq: n, reason: row.get(1), event: read(format!("dead letter {n}"), row.get(2))? })
        })
        .collect()
}

/// Writes an incident and keeps its indexes in step (the same indexes as sled's).
fn write_incident(tx: &mut Transaction<'_>, incident: &Incident) -> Result<(), StoreError> {
    let id = incident.id.number() as i64;
    tx.execute(
        "INSERT INTO ic_incidents (id, open, record) VALUES ($1, $2, $3) \
         ON CONFLICT (id) DO UPDATE SET open = EXCLUDED.open, record = EXCLUDED.record",
        &[&id, &incident.is_open(), &text(incident)],
    )
    .map_err(db_error)?;
    let fingerprints: Vec<String> =
        incident.alerts.iter().flat_map(|a| a.fingerprints.iter()).map(|f| f.as_str().to_string()).collect();
    if incident.is_open() {
        tx.execute(
            "INSERT INTO ic_incident_fingerprints (fingerprint, incident) SELECT unnest($1::text[]), $2 \
             ON CONFLICT (fingerprint) DO UPDATE SET incident = EXCLUDED.incident",
            &[&fingerprints, &id],
        )
        .map_err(db_error)?;
    } else {
        tx.execute(
            "DELETE FROM ic_incident_fingerprints WHERE fingerprint = ANY($1) AND incident = $2",
            &[&fingerprints, &id],
        )
        .map_err(db_error)?;
    }
    let slack = &incident.slack;
    let mut places = Vec::new();
    if let Some(channel) = &slack.channel {
        for ts in [&slack.thread_ts, &slack.header_ts].into_iter().flatten() {
            places.push(message_place(channel, ts));
        }
    }
    if let Some(channel) = &slack.incident_channel {
        places.push(place_key(&Place::Channel(channel.clone())));
    }
    if !places.is_empty() {
        tx.execute(
            "INSERT INTO ic_incident_places (place, incident) SELECT unnest($1::text[]), $2 \
             ON CONFLICT (place) DO UPDATE SET incident = EXCLUDED.incident",
            &[&places, &id],
        )
        .map_err(db_error)?;
    }
    tx.execute(
        "INSERT INTO ic_meta (key, value) VALUES ('next_incident_id', $1) \
         ON CONFLICT (key) DO UPDATE SET value = GREATEST(ic_meta.value, EXCLUDED.value)",
        &[&(id + 1)],
    )
    .map_err(db_error)?;
    Ok(())
}

fn incident_at(c: &mut impl GenericClient, sql: &str, key: &str) -> Result<Option<Incident>, StoreError> {
    let row = c.query_opt(sql, &[&key]).map_err(db_error)?;
    row.map(|r| read(format!("incident {}", r.get::<_, i64>(0)), r.get(1))).transpose()
}

fn incidents(c: &mut impl GenericClient, sql: &str) -> Result<Vec<Incident>, StoreError> {
    let rows = c.query(sql, &[]).map_err(db_error)?;
    rows.iter().map(|r| read(format!("incident {}", r.get::<_, i64>(0)), r.get(1))).collect()
}

impl Store for PgStore {
    fn next_incident_id(&self) -> Result<IncidentId, StoreError> {
        let n = self.run(next_incident_number)?;
        IncidentId::new(n).map_err(|e| corrupt("next_incident_id", e.0))
    }

    fn get_incident(&self, id: IncidentId) -> Result<Option<Incident>, StoreError> {
        let id = id.number() as i64;
        self.run(move |c| {
            let row = c.query_opt("SELECT record FROM ic_incidents WHERE id = $1", &[&id]).map_err(db_error)?;
            row.map(|r| read(format!("incident {id}"), r.get(0))).transpose()
        })
    }

    fn find_open_incident_by_fingerprint(&self, fingerprint: &Fingerprint) -> Result<Option<Incident>, StoreError> {
        let key = fingerprint.as_str().to_string();
        let found = self.run(move |c| {
            incident_at(
                c,
                "SELECT i.id, i.record FROM ic_incident_fingerprints f JOIN ic_incidents i ON i.id = f.incident \
                 WHERE f.fingerprint = $1",
                &key,
            )
        })?;
        Ok(found.filter(Incident::is_open))
    }

    fn find_incident(&self, place: &Place) -> Result<Option<Incident>, StoreError> {
        let key = place_key(place);
        self.run(move |c| {
            incident_at(
                c,
                "SELECT i.id, i.record FROM ic_incident_places p JOIN ic_incidents i ON i.id = p.incident WHERE p.place = $1",
                &key,
            )
        })
    }

    fn open_incidents(&self) -> Result<Vec<Incident>, StoreError> {
        self.run(|c| incidents(c, "SELECT id, record FROM ic_incidents WHERE open ORDER BY id"))
    }

    fn all_incidents(&self) -> Result<Vec<Incident>, StoreError> {
        self.run(|c| incidents(c, "SELECT id, record FROM ic_incidents ORDER BY id"))
    }

    fn accept_events(&self, events: &[(InboxEvent, Option<DedupeKey>)]) -> Result<Vec<Acceptance>, StoreError> {
        let batch: Vec<(String, Option<DedupeKey>)> = events.iter().map(|(e, k)| (text(e), k.clone())).collect();
        let notify = self.leadership.elect;
        self.transaction(move |tx| {
            // The batch's keys, first occurrence each; a concurrent replica inserting one of
            // them makes this wait for its commit, then see the conflict: exactly once across
            // replicas. Three statements whatever the batch's size.
            let mut first_of_key = std::collections::HashMap::new();
            let (mut keys, mut untils) = (Vec::new(), Vec::new());
            for (i, (_, dedupe)) in batch.iter().enumerate() {
                if let Some((key, until)) = dedupe
                    && !first_of_key.contains_key(key.as_str())
                {
                    first_of_key.insert(key.as_str(), i);
                    keys.push(key.clone());
                    untils.push(*until);
                }
            }
            let fresh: std::collections::HashSet<String> = if keys.is_empty() {
                Default::default()
            } else {
                tx.query(
                    "INSERT INTO ic_dedupe_keys (key, until) SELECT * FROM unnest($1::text[], $2::timestamptz[]) \
                     ON CONFLICT (key) DO NOTHING RETURNING key",
                    &[&keys, &untils],
                )
                .map_err(db_error)?
                .iter()
                .map(|r| r.get(0))
                .collect()
            };
            let taken: Vec<bool> = batch
                .iter()
                .enumerate()
                .map(|(i, (_, dedupe))| match dedupe {
                    None => true,
                    Some((key, _)) => first_of_key.get(key.as_str()) == Some(&i) && fresh.contains(key),
                })
                .collect();
            let records: Vec<&str> =
                batch.iter().zip(&taken).filter(|(_, t)| **t).map(|((record, _), _)| record.as_str()).collect();
            let mut seqs: Vec<i64> = if records.is_empty() {
                Vec::new()
            } else {
                tx.query(
                    "INSERT INTO ic_inbox (event) SELECT e FROM unnest($1::text[]) WITH ORDINALITY AS t(e, n) ORDER BY n \
                     RETURNING seq",
                    &[&records],
                )
                .map_err(db_error)?
                .iter()
                .map(|r| r.get(0))
                .collect()
            };
            // Numbers are drawn in insertion order, which is the batch's order.
            seqs.sort_unstable();
            let mut seqs = seqs.into_iter();
            let out: Vec<Acceptance> = taken
                .iter()
                .map(|t| match (t, t.then(|| seqs.next()).flatten()) {
                    (true, Some(n)) => Acceptance::Accepted(seq(n)),
                    _ => Acceptance::Duplicate,
                })
                .collect();
            if notify && out.iter().any(|a| matches!(a, Acceptance::Accepted(_))) {
                tx.execute("SELECT pg_notify($1, '')", &[&INBOX_CHANNEL]).map_err(db_error)?;
            }
            Ok(out)
        })
    }

    fn next_inbox_event(&self) -> Result<Option<(InboxSeq, InboxEvent)>, StoreError> {
        let skip = self.consumed_waiting();
        self.run(move |c| {
            let row = c
                .query_opt("SELECT seq, event FROM ic_inbox WHERE seq <> ALL($1) ORDER BY seq LIMIT 1", &[&skip])
                .map_err(db_error)?;
            row.map(|r| {
                let n = seq(r.get(0));
                Ok((n, read(format!("inbox event {n}"), r.get(1))?))
            })
            .transpose()
        })
    }

    fn inbox_len(&self) -> Result<usize, StoreError> {
        let skip = self.consumed_waiting();
        self.run(move |c| {
            let row = c.query_one("SELECT count(*) FROM ic_inbox WHERE seq <> ALL($1)", &[&skip]).map_err(db_error)?;
            Ok(row.get::<_, i64>(0) as usize)
        })
    }

    fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        self.run(dead_letters)
    }

    fn expire_dedupe_keys(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        self.leader_transaction(move |tx| {
            Ok(tx.execute("DELETE FROM ic_dedupe_keys WHERE until < $1", &[&now]).map_err(db_error)? as usize)
        })
    }

    fn commit(&self, commit: Commit) -> Result<Vec<OutboxSeq>, StoreError> {
        let outbox: Vec<String> = commit.outbox.iter().map(text).collect();
        let alert =
            commit.alert.as_ref().map(|a| (a.alert.slack.as_ref().map(|m| message_place(&m.channel, &m.ts)), text(a)));
        let alert_update = commit
            .alert_update
            .as_ref()
            .and_then(|a| a.alert.slack.as_ref().map(|m| (message_place(&m.channel, &m.ts), text(a))));
        let thread = commit.thread_message.as_ref().map(|m| (message_place(&m.channel, &m.ts), text(m)));
        if let Some(seq) = commit.consumption_only() {
            let waiting = {
                let mut consumed = self.consumed();
                consumed.seqs.push(seq as i64);
                consumed.seqs.len()
            };
            if waiting >= CONSUMED_BATCH {
                let _one_at_a_time = self.deleting.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                self.delete_consumed()?;
            }
            return Ok(Vec::new());
        }
        let consumed = commit.consumed.map(|n| n as i64);
        let _one_at_a_time = self.deleting.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let earlier = self.consumed_waiting();
        let deleted = earlier.clone();
        let dead_letter = commit.dead_letter.clone();
        let incident = commit.incident;
        self.unflushed.store(true, Ordering::SeqCst);
        let seqs = self.leader_transaction(move |tx| {
            // A processing step does not wait for the disk: the processor persists once per
            // batch, before egress is told about its calls (see `persist`). Lost to a server
            // crash, a step is lost whole, with the consumption of its event, which is then
            // handled again.
            tx.batch_execute("SET LOCAL synchronous_commit TO OFF").map_err(db_error)?;
            if let Some((place, record)) = &thread {
                tx.execute(
                    "INSERT INTO ic_thread_messages (place, record) VALUES ($1, $2) \
                     ON CONFLICT (place) DO UPDATE SET record = EXCLUDED.record",
                    &[place, record],
                )
                .map_err(db_error)?;
            }
            if let Some((message, record)) = &alert {
                tx.execute("INSERT INTO ic_alerts (message, record) VALUES ($1, $2)", &[message, record])
                    .map_err(db_error)?;
            }
            if let Some((message, record)) = &alert_update {
                tx.execute(
                    "UPDATE ic_alerts SET record = $2 WHERE id = (SELECT max(id) FROM ic_alerts WHERE message = $1)",
                    &[message, record],
                )
                .map_err(db_error)?;
            }
            if !earlier.is_empty() {
                delete_inbox_rows(tx, &earlier)?;
            }
            if let Some(n) = consumed {
                let removed = tx.query_opt("DELETE FROM ic_inbox WHERE seq = $1 RETURNING event", &[&n]).map_err(db_error)?;
                if let (Some(reason), Some(row)) = (&dead_letter, removed) {
                    let event: String = row.get(0);
                    tx.execute(
                        "INSERT INTO ic_dead_letters (seq, reason, event) VALUES ($1, $2, $3) ON CONFLICT (seq) DO NOTHING",
                        &[&n, reason, &event],
                    )
                    .map_err(db_error)?;
                }
            }
            if let Some(incident) = &incident {
                write_incident(tx, incident)?;
            }
            let mut seqs = Vec::with_capacity(outbox.len());
            for entry in &outbox {
                let n: i64 = tx
                    .query_one("INSERT INTO ic_outbox (entry) VALUES ($1) RETURNING seq", &[entry])
                    .map_err(db_error)?
                    .get(0);
                seqs.push(seq(n));
            }
            Ok(seqs)
        })?;
        self.forget_deleted(&deleted);
        Ok(seqs)
    }

    fn pending_outbox(&self) -> Result<Vec<(OutboxSeq, OutboxEntry)>, StoreError> {
        self.pending_outbox_after(None)
    }

    fn pending_outbox_after(&self, after: Option<OutboxSeq>) -> Result<Vec<(OutboxSeq, OutboxEntry)>, StoreError> {
        let after = after.map_or(-1, |a| a as i64);
        self.run(move |c| {
            let rows =
                c.query("SELECT seq, entry FROM ic_outbox WHERE seq > $1 ORDER BY seq", &[&after]).map_err(db_error)?;
            rows.iter()
                .map(|r| {
                    let n = seq(r.get(0));
                    Ok((n, read(format!("outbox entry {n}"), r.get(1))?))
                })
                .collect()
        })
    }

    fn complete_outbox(
        &self,
        seq_done: OutboxSeq,
        remember: Option<(&MessageKey, &Delivery)>,
        then: Option<&InboxEvent>,
    ) -> Result<(), StoreError> {
        let remembered = remember.map(|(k, d)| (k.to_string(), text(d)));
        let follow_up = then.map(text);
        self.leader_transaction(move |tx| {
            tx.execute("DELETE FROM ic_outbox WHERE seq = $1", &[&(seq_done as i64)]).map_err(db_error)?;
            if let Some((key, delivery)) = &remembered {
                put_ref(tx, key, delivery)?;
            }
            if let Some(event) = &follow_up {
                tx.execute("INSERT INTO ic_inbox (event) VALUES ($1)", &[event]).map_err(db_error)?;
            }
            Ok(())
        })
    }

    fn put_message_ref(&self, key: &MessageKey, delivery: &Delivery) -> Result<(), StoreError> {
        let (key, delivery) = (key.to_string(), text(delivery));
        self.leader_transaction(move |tx| put_ref(tx, &key, &delivery))
    }

    fn get_message_ref(&self, key: &MessageKey) -> Result<Option<Delivery>, StoreError> {
        let key = key.to_string();
        self.run(move |c| {
            let row = c.query_opt("SELECT delivery FROM ic_message_refs WHERE key = $1", &[&key]).map_err(db_error)?;
            row.map(|r| read(format!("message ref {key}"), r.get(0))).transpose()
        })
    }

    fn alert_count(&self) -> Result<usize, StoreError> {
        self.run(
            |c| Ok(c.query_one("SELECT count(*) FROM ic_alerts", &[]).map_err(db_error)?.get::<_, i64>(0) as usize),
        )
    }

    fn find_alert_by_message(&self, channel: &ChannelId, ts: &str) -> Result<Option<LoggedAlert>, StoreError> {
        let place = message_place(channel, ts);
        self.run(move |c| {
            let row = c
                .query_opt("SELECT id, record FROM ic_alerts WHERE message = $1 ORDER BY id DESC LIMIT 1", &[&place])
                .map_err(db_error)?;
            row.map(|r| read(format!("alert {}", r.get::<_, i64>(0)), r.get(1))).transpose()
        })
    }

    fn find_thread_message(&self, channel: &ChannelId, ts: &str) -> Result<Option<ThreadMessage>, StoreError> {
        let place = message_place(channel, ts);
        self.run(move |c| {
            let row =
                c.query_opt("SELECT record FROM ic_thread_messages WHERE place = $1", &[&place]).map_err(db_error)?;
            row.map(|r| read(format!("thread message {place}"), r.get(0))).transpose()
        })
    }

    /// Accepted events, deliveries and the other writes are durable when their transaction
    /// commits (`synchronous_commit`, the server's default). Processing steps commit without
    /// waiting; this makes them durable with one synchronous commit, which flushes the write-ahead
    /// log up to it and so every step before it.
    fn persist(&self) -> Result<(), StoreError> {
        // Ingress persists too: a delete that fails (a replica that stopped leading) must not
        // fail the events it is making durable. The rows stay, to be handled again.
        // While the processor's step is deleting, the rest waits for the next delete.
        if let Ok(_one_at_a_time) = self.deleting.try_lock()
            && let Err(e) = self.delete_consumed()
        {
            tracing::debug!(error = %e, "consumed inbox events not deleted yet");
        }
        if !self.unflushed.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        let flushed = self.run(|c| {
            c.execute(
                "INSERT INTO ic_meta (key, value) VALUES ('flushes', 1) ON CONFLICT (key) DO UPDATE SET value = ic_meta.value + 1",
                &[],
            )
            .map_err(db_error)?;
            Ok(())
        });
        if flushed.is_err() {
            self.unflushed.store(true, Ordering::SeqCst);
        }
        flushed
    }

    fn role(&self) -> watch::Receiver<Role> {
        self.leadership.role.subscribe()
    }

    fn inbox_elsewhere(&self) -> Option<watch::Receiver<u64>> {
        self.leadership.elect.then(|| self.leadership.inbox.subscribe())
    }
}

/// libpq's `sslmode=prefer` / `require`: the connection is encrypted, the server's certificate
/// is not checked (the handshake's signatures still are).
#[derive(Debug)]
struct EncryptOnly(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn put_ref(tx: &mut Transaction<'_>, key: &str, delivery: &str) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO ic_message_refs (key, delivery) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET delivery = EXCLUDED.delivery",
        &[&key, &delivery],
    )
    .map_err(db_error)?;
    Ok(())
}

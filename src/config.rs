//! Every knob chatsink has: the command line (clap), each flag with its `CHATSINK_*` environment
//! variable and a default that works on a laptop, resolved into one validated [`Settings`].

use crate::domain::{parse_rsa_public_key, HostPattern, RsaPublicKey, Timestamp};
use crate::ingest::{DumpStoreLocation, ReconcileSettings};
use crate::store::DatabaseLocation;
use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub const RTK_PUBLIC_KEY_URL: &str =
    "https://api.realtime.cloudflare.com/.well-known/webhooks.json";
pub const DYTE_PUBLIC_KEY_URL: &str = "https://api.dyte.io/.well-known/webhooks.json";
pub const RTK_API_BASE: &str = "https://api.cloudflare.com/client/v4";
pub const DYTE_API_BASE: &str = "https://api.dyte.io/v2";
pub const DEFAULT_ALLOW_HOSTS: &str = "*.amazonaws.com,*.cloudflarestorage.com,*.r2.dev";

#[derive(Debug, Parser)]
#[command(name = "chatsink", version, about = "Archive and query Cloudflare RealtimeKit meeting chat", long_about = None)]
pub struct Cli {
    /// Log format: human-readable `pretty` or one JSON object per line.
    #[arg(
        long,
        global = true,
        env = "CHATSINK_LOG_FORMAT",
        value_enum,
        default_value = "pretty"
    )]
    pub log_format: LogFormat,

    /// TOML config file; its keys are the flags' names in snake case. Flags and environment
    /// variables take precedence over it.
    #[arg(long, global = true, env = "CHATSINK_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

// Parsed once per process: the size of `serve`'s arguments costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Receive webhooks, run ingest workers and serve the query API.
    Serve(ServeArgs),
    /// Load a chat dump CSV by hand through the same parser and loader (no server needed).
    Ingest(IngestArgs),
    /// Re-load sessions from their stored dumps (or a fresh download) for cron.
    Reprocess(ReprocessArgs),
    /// Pull past sessions: list the app's ended sessions in a window through the RealtimeKit API
    /// and load each one the archive does not hold yet. Safe while `serve` runs, and to run
    /// again after an interruption (it resumes without repeating downloads).
    Backfill(BackfillArgs),
    /// List ingest jobs with their attempts and last error.
    Jobs(JobsArgs),
    /// List a session's dump rows that could not be loaded: line, reason, and the row's bytes as
    /// read (bytes that are not UTF-8 as `\xNN`).
    Rejected(RejectedArgs),
    /// API tokens kept in the database: `token create` (prints the secret, once), `token list`,
    /// `token revoke`.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Erase a participant, a message or a session everywhere chatsink keeps it, for good: later
    /// loads leave it out. Prints what was removed.
    Erase(EraseArgs),
    /// Remove sessions whose last message is older than an age (retention, for cron), keeping a
    /// tombstone for each so a late re-delivery is not loaded.
    Purge(PurgeArgs),
    /// The erasure list, to carry erasures across a restore: `erasures export FILE` writes it
    /// (one JSON object a line), `erasures apply FILE` erases each entry again (idempotent).
    /// Restoring a backup? Export first, restore, then apply.
    #[command(subcommand)]
    Erasures(ErasuresCommand),
    /// Print the audit log: every /v1 request and every deletion, newest first.
    Audit(AuditArgs),
    /// Check the configuration: `chatsink config check` validates it and prints the effective one.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Copy the live database to PATH with SQLite's online backup API (safe while serving).
    Backup(BackupArgs),
    /// Apply pending schema migrations to the database (creating an SQLite file if needed) and
    /// exit. `serve` applies them at start too.
    Migrate(MigrateArgs),
    /// Copy an SQLite archive into an empty PostgreSQL database, keeping every id (so cursors,
    /// links and job numbers stay valid). Refuses a destination that already holds an archive.
    CopyArchive(CopyArchiveArgs),
    /// Send a signed `meeting.chatSynced` to a running chatsink, serving a generated dump from a
    /// loopback port until it has been downloaded.
    SendTestWebhook(SendTestWebhookArgs),
    /// A self-contained tour: serve on a temp database, deliver a signed webhook for a generated
    /// session, show the queries an analyst would run, and keep serving until Ctrl-C.
    Demo(DemoArgs),
    /// GET a URL and exit 0 on a 2xx answer (a health check for images without curl).
    Probe(ProbeArgs),
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token. Prints the secret alone on stdout (`TOKEN=$(chatsink token create ...)`);
    /// the database keeps only its hash.
    Create(TokenCreateArgs),
    /// List tokens: name, scope, created, expiry, last use (never the secret).
    List(TokenListArgs),
    /// Revoke a token: refused from the next request on, on every instance.
    Revoke(TokenRevokeArgs),
}

#[derive(Debug, Subcommand)]
pub enum ErasuresCommand {
    /// Write every erasure (and retention tombstone) to FILE, one JSON object a line.
    Export(ErasuresFileArgs),
    /// Erase again every entry of FILE, through the same steps as `chatsink erase`; entries
    /// already applied remove nothing more. A file with a bad line applies nothing.
    Apply(ErasuresFileArgs),
}

#[derive(Debug, Args)]
pub struct ErasuresFileArgs {
    /// The erasure list's file (`-`: standard output or input).
    pub file: PathBuf,
    #[command(flatten)]
    pub storage: StorageArgs,
}

#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// Its name: what the audit log and `token list` show.
    #[arg(long)]
    pub name: String,
    /// A meeting it may read (repeat for several); without, every meeting.
    #[arg(long = "meeting")]
    pub meetings: Vec<String>,
    /// How long it lasts: 30d, 12h, 45m, 90s; without, until revoked.
    #[arg(long, value_parser = age)]
    pub expires: Option<i64>,
    /// May also erase and read the audit log.
    #[arg(long)]
    pub admin: bool,
    #[command(flatten)]
    pub storage: StorageArgs,
}

#[derive(Debug, Args)]
pub struct TokenListArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
}

#[derive(Debug, Args)]
pub struct TokenRevokeArgs {
    /// The token's name.
    pub name: String,
    #[command(flatten)]
    pub storage: StorageArgs,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct EraseTargetArgs {
    /// A participant (user) id.
    #[arg(long)]
    pub user: Option<String>,
    /// A message id.
    #[arg(long)]
    pub message: Option<String>,
    /// A session id.
    #[arg(long)]
    pub session: Option<String>,
}

#[derive(Debug, Args)]
pub struct EraseArgs {
    #[command(flatten)]
    pub target: EraseTargetArgs,
    #[command(flatten)]
    pub storage: StorageArgs,
}

#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// Remove sessions whose last message is older than this: 90d, 6months, 1y, 2w, 12h, 30min
    /// (a bare `m` is refused: minutes or months?)
    #[arg(long, value_parser = age)]
    pub older_than: i64,
    /// Also remove audit entries older than this.
    #[arg(long, value_parser = age)]
    pub audit_older_than: Option<i64>,
    /// Print what would go (sessions, messages, dumps, the cut-off) and remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Purge even when that removes more than half the archive or messages from the last
    /// day (without it, such a purge asks on a terminal, and is refused elsewhere).
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub storage: StorageArgs,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Entries from this time on: a date (2026-12-01, midnight UTC) or a time (RFC 3339), as
    /// the API's `since` takes.
    #[arg(long, value_parser = date_or_time)]
    pub since: Option<Timestamp>,
    /// Only this token's entries (its name).
    #[arg(long)]
    pub token: Option<String>,
    /// At most this many entries.
    #[arg(long, default_value_t = 1000)]
    pub limit: u32,
    #[command(flatten)]
    pub storage: StorageArgs,
}

/// An age such as `90d` or `12h`, in milliseconds.
fn age(raw: &str) -> Result<i64, String> {
    crate::domain::parse_age(raw)
}

/// A retention period in milliseconds: a bare number is days (the settings' names say so),
/// anything else an age in [`age`]'s grammar.
fn retention(raw: &str) -> Result<i64, String> {
    match raw.trim().parse::<u32>() {
        Ok(0) => Err(format!(
            "'{raw}' days is no time at all (as in 90, 90d or 6months)"
        )),
        Ok(days) if days <= 36_500 => Ok(i64::from(days) * 86_400_000),
        Ok(_) => Err(format!("'{raw}' days is more than a hundred years")),
        Err(_) => age(raw),
    }
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the serve configuration (flags, environment, config file) and print it, secrets
    /// redacted. Exits non-zero naming the first invalid setting.
    Check(Box<ServeArgs>),
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Where to write the copy (must not exist).
    pub path: PathBuf,
    /// SQLite database file to copy (a PostgreSQL database is backed up with pg_dump).
    #[arg(long, env = "CHATSINK_DATABASE", default_value = "./chatsink.db", value_parser = DatabaseLocationParser)]
    pub database: DatabaseLocation,
}

#[derive(Debug, Args)]
pub struct CopyArchiveArgs {
    /// The SQLite archive to copy (left as it is).
    #[arg(long, value_parser = DatabaseLocationParser)]
    pub from: DatabaseLocation,
    /// The PostgreSQL database to copy it into: a `postgres://` URL of an empty database.
    #[arg(long, value_parser = DatabaseLocationParser)]
    pub to: DatabaseLocation,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
}

#[derive(Debug, Args)]
pub struct SendTestWebhookArgs {
    /// Base URL of the running chatsink.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// A Standard Webhooks secret the service accepts (`whsec_...`).
    #[arg(
        long,
        env = "CHATSINK_HMAC_SECRETS",
        value_delimiter = ',',
        hide_env_values = true,
        value_parser = secret
    )]
    pub hmac_secret: Vec<SecretString>,
    /// Session id of the test delivery (default: a fresh one).
    #[arg(long)]
    pub session: Option<String>,
    /// Messages in the generated dump.
    #[arg(long, default_value_t = 200)]
    pub messages: usize,
    /// Seconds to keep serving the dump while waiting for the service to fetch (and load) it.
    #[arg(long, default_value_t = 30)]
    pub wait_secs: u64,
    /// A read token, to wait until the session is loaded and queryable (default: the one the
    /// service generated in its data dir).
    #[arg(
        long,
        env = "CHATSINK_READ_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub read_token: Vec<String>,
    /// The service's data dir, where it wrote its generated read token.
    #[arg(long, env = "CHATSINK_DATA_DIR", default_value = "./chatsink-data")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Address to serve on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Messages in the generated session.
    #[arg(long, default_value_t = 2000)]
    pub messages: usize,
    /// Exit after showing the queries instead of serving until Ctrl-C.
    #[arg(long)]
    pub once: bool,
    /// Keep the demo's archive (its database and data dir) in this directory, instead of a
    /// temporary one removed at exit; `serve` can open it afterwards.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The URL to GET, e.g. http://127.0.0.1:8080/readyz.
    pub url: String,
}

#[derive(Debug, Clone, Args)]
pub struct StorageArgs {
    /// The database: an SQLite file path, or a `postgres://` / `postgresql://` URL (TLS per its
    /// `sslmode`; the password is never printed).
    #[arg(long, env = "CHATSINK_DATABASE", default_value = "./chatsink.db", value_parser = DatabaseLocationParser)]
    pub database: DatabaseLocation,
    /// Create the SQLite file's directory when it is missing (without it, a missing directory
    /// is an error: a mistyped path must not become a new, empty archive).
    #[arg(long, env = "CHATSINK_CREATE_DIRS")]
    pub create_dirs: bool,
    /// Connections to a PostgreSQL database per process.
    #[arg(long, env = "CHATSINK_DATABASE_POOL", default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub database_pool: u64,
    /// Directory for working files, generated files (such as the read token) and, by default,
    /// the kept raw dumps.
    #[arg(long, env = "CHATSINK_DATA_DIR", default_value = "./chatsink-data")]
    pub data_dir: PathBuf,
    /// Where raw dumps are kept for `reprocess`: a directory (default: `dumps` in the data dir),
    /// `s3://bucket/prefix` (with the usual AWS_* variables), or `none` (reprocess downloads
    /// again through the Chat Replay API).
    #[arg(long, env = "CHATSINK_DUMP_STORE", value_parser = dump_store_location)]
    pub dump_store: Option<DumpStoreLocation>,
}

impl StorageArgs {
    /// The dump store, the default filled in.
    pub fn dump_store(&self) -> DumpStoreLocation {
        self.dump_store
            .clone()
            .unwrap_or_else(|| DumpStoreLocation::default_under(&self.data_dir))
    }
}

#[derive(Debug, Clone, Args)]
pub struct DownloadArgs {
    /// Hosts chat dumps may be downloaded from: `*.example.com`, `host`, `host:port`, `127.0.0.1:9000`.
    /// Private, loopback and link-local addresses are refused unless listed here as IP literals.
    #[arg(long, env = "CHATSINK_DOWNLOAD_ALLOW_HOSTS", value_delimiter = ',', default_value = DEFAULT_ALLOW_HOSTS)]
    pub download_allow_hosts: Vec<String>,
    /// Allow plain `http` downloads (tests and local storage only). A bare flag means true.
    #[arg(long, env = "CHATSINK_DOWNLOAD_ALLOW_HTTP", default_value_t = false, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub download_allow_http: bool,
    /// Largest dump accepted, in decoded bytes.
    #[arg(long, env = "CHATSINK_DOWNLOAD_MAX_BYTES", default_value_t = 512 * 1024 * 1024)]
    pub download_max_bytes: u64,
    /// Connect timeout for downloads and API calls, in seconds.
    #[arg(
        long,
        env = "CHATSINK_DOWNLOAD_CONNECT_TIMEOUT_SECS",
        default_value_t = 10
    )]
    pub download_connect_timeout_secs: u64,
    /// Read timeout (no bytes for this long) for downloads and API calls, in seconds.
    #[arg(
        long,
        env = "CHATSINK_DOWNLOAD_READ_TIMEOUT_SECS",
        default_value_t = 30
    )]
    pub download_read_timeout_secs: u64,
    /// Chat Replay API base URL (Cloudflare).
    #[arg(long, env = "CHATSINK_RTK_API_BASE", default_value = RTK_API_BASE)]
    pub rtk_api_base: String,
    /// Cloudflare account id for the Chat Replay API.
    #[arg(long, env = "CHATSINK_RTK_ACCOUNT_ID")]
    pub rtk_account_id: Option<String>,
    /// RealtimeKit app id for the Chat Replay API.
    #[arg(long, env = "CHATSINK_RTK_APP_ID")]
    pub rtk_app_id: Option<String>,
    /// Cloudflare API token for the Chat Replay API.
    #[arg(long, env = "CHATSINK_RTK_API_TOKEN", hide_env_values = true, value_parser = secret)]
    pub rtk_api_token: Option<SecretString>,
    /// Dyte v2 API base URL (legacy).
    #[arg(long, env = "CHATSINK_DYTE_API_BASE", default_value = DYTE_API_BASE)]
    pub dyte_api_base: String,
    /// Dyte organization id (legacy Chat Replay API, HTTP Basic user).
    #[arg(long, env = "CHATSINK_DYTE_ORG_ID")]
    pub dyte_org_id: Option<String>,
    /// Dyte API key (legacy Chat Replay API, HTTP Basic password).
    #[arg(long, env = "CHATSINK_DYTE_API_KEY", hide_env_values = true, value_parser = secret)]
    pub dyte_api_key: Option<SecretString>,
}

#[derive(Debug, Clone, Args)]
pub struct JobArgs {
    /// Attempts before a job is `dead`.
    #[arg(long, env = "CHATSINK_JOB_MAX_ATTEMPTS", default_value_t = 8)]
    pub job_max_attempts: u32,
    /// How long a claimed job stays claimed without a heartbeat, in seconds.
    #[arg(long, env = "CHATSINK_JOB_LEASE_SECS", default_value_t = 60)]
    pub job_lease_secs: u64,
    /// Seconds without a heartbeat after which a process holding jobs is taken for gone and its
    /// jobs are claimed again (a process known to have exited is taken for gone at once).
    #[arg(long, env = "CHATSINK_OWNER_STALE_SECS", default_value_t = 5)]
    pub owner_stale_secs: u64,
    /// First retry delay in milliseconds; doubles per attempt (with jitter) up to the cap.
    #[arg(long, env = "CHATSINK_JOB_BACKOFF_BASE_MS", default_value_t = 2000)]
    pub job_backoff_base_ms: u64,
    /// Longest retry delay, in seconds.
    #[arg(long, env = "CHATSINK_JOB_BACKOFF_CAP_SECS", default_value_t = 3600)]
    pub job_backoff_cap_secs: u64,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "CHATSINK_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub storage: StorageArgs,
    /// RealtimeKit RSA public key, SPKI PEM text (escaped `\n` accepted).
    #[arg(
        long,
        env = "CHATSINK_RTK_PUBLIC_KEY",
        hide_env_values = true,
        conflicts_with = "rtk_public_key_file"
    )]
    pub rtk_public_key: Option<String>,
    /// Path to the RealtimeKit RSA public key (SPKI PEM).
    #[arg(long, env = "CHATSINK_RTK_PUBLIC_KEY_FILE")]
    pub rtk_public_key_file: Option<PathBuf>,
    /// Where the public key is fetched from when none is given (on first need, then cached).
    #[arg(long, env = "CHATSINK_RTK_PUBLIC_KEY_URL", default_value = RTK_PUBLIC_KEY_URL)]
    pub rtk_public_key_url: String,
    /// Legacy Dyte deliveries' (`dyte-signature`) RSA public key, SPKI PEM text.
    #[arg(
        long,
        env = "CHATSINK_DYTE_PUBLIC_KEY",
        hide_env_values = true,
        conflicts_with = "dyte_public_key_file"
    )]
    pub dyte_public_key: Option<String>,
    /// Path to Dyte's RSA public key (SPKI PEM).
    #[arg(long, env = "CHATSINK_DYTE_PUBLIC_KEY_FILE")]
    pub dyte_public_key_file: Option<PathBuf>,
    /// Where Dyte's public key is fetched from when none is given.
    #[arg(long, env = "CHATSINK_DYTE_PUBLIC_KEY_URL", default_value = DYTE_PUBLIC_KEY_URL)]
    pub dyte_public_key_url: String,
    /// A fetched public key is fetched again after failed signatures at most once in this many
    /// seconds (a signature that fails meanwhile is a 503, so the sender retries).
    #[arg(long, env = "CHATSINK_KEY_REFETCH_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub key_refetch_secs: u64,
    /// Standard Webhooks HMAC secrets, comma-separated `whsec_<base64>`; several allow rotation.
    #[arg(
        long,
        env = "CHATSINK_HMAC_SECRETS",
        value_delimiter = ',',
        hide_env_values = true,
        value_parser = secret
    )]
    pub hmac_secrets: Vec<SecretString>,
    /// Accept deliveries without checking any signature. Local experiments only. A bare flag
    /// means true.
    #[arg(long, env = "CHATSINK_INSECURE_SKIP_VERIFY", default_value_t = false, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub insecure_skip_verify: bool,
    /// Largest webhook body accepted, in bytes.
    #[arg(long, env = "CHATSINK_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Bearer tokens for the `/v1` query API, comma-separated. Generated on first start if none.
    #[arg(
        long,
        env = "CHATSINK_READ_TOKENS",
        value_delimiter = ',',
        hide_env_values = true,
        value_parser = secret
    )]
    pub read_tokens: Vec<SecretString>,
    /// Admin tokens, comma-separated: they may also erase (`DELETE /v1/...`) and read the audit
    /// log. Tokens made by `chatsink token create --admin` work as well.
    #[arg(
        long,
        env = "CHATSINK_ADMIN_TOKENS",
        value_delimiter = ',',
        hide_env_values = true,
        value_parser = secret
    )]
    pub admin_tokens: Vec<SecretString>,
    /// How long a session is kept after its last message: days (`90`) or an age (`90d`,
    /// `6months`, `1y`); unset: for ever. `serve` sweeps expired sessions soon after start-up
    /// and then hourly.
    #[arg(long, env = "CHATSINK_RETENTION_DAYS", value_parser = retention)]
    pub retention_days: Option<i64>,
    /// How long an audit entry is kept: days or an age, as above; unset: for ever.
    #[arg(long, env = "CHATSINK_AUDIT_RETENTION_DAYS", value_parser = retention)]
    pub audit_retention_days: Option<i64>,
    /// Number of ingest workers.
    #[arg(long, env = "CHATSINK_WORKERS", default_value_t = 2)]
    pub workers: usize,
    /// HTTP worker threads (0: one per core).
    #[arg(long, env = "CHATSINK_HTTP_WORKERS", default_value_t = 0)]
    pub http_workers: usize,
    /// `/readyz` fails while more ingest jobs than this are due and waiting.
    #[arg(long, env = "CHATSINK_READY_MAX_BACKLOG", default_value_t = 1000)]
    pub ready_max_backlog: i64,
    /// Seconds between reconcile passes, which pull sessions whose webhook never came through
    /// the RealtimeKit API (needs its credentials). 0 turns reconcile off.
    #[arg(long, env = "CHATSINK_RECONCILE_INTERVAL_SECS", default_value_t = 3600)]
    pub reconcile_interval_secs: u64,
    /// Seconds after a session ends that its webhook has before reconcile pulls it.
    #[arg(long, env = "CHATSINK_RECONCILE_GRACE_SECS", default_value_t = 900)]
    pub reconcile_grace_secs: u64,
    /// How long one query API read (a page, stats, one export page) may run, in milliseconds.
    #[arg(long, env = "CHATSINK_QUERY_BUDGET_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub query_budget_ms: u64,
    #[command(flatten)]
    pub download: DownloadArgs,
    #[command(flatten)]
    pub jobs: JobArgs,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// The chat dump CSV. It may hold rows of many sessions; each is loaded as its own unit.
    pub file: PathBuf,
    /// Treat the file as the dump of this one session (rows of other sessions are rejected).
    #[arg(long)]
    pub session: Option<String>,
    #[command(flatten)]
    pub storage: StorageArgs,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["session", "failed", "dead", "all", "since"])))]
pub struct ReprocessArgs {
    /// Reprocess this session (repeatable).
    #[arg(long)]
    pub session: Vec<String>,
    /// Sessions whose last job failed and is waiting to retry.
    #[arg(long)]
    pub failed: bool,
    /// Sessions whose last job is dead.
    #[arg(long)]
    pub dead: bool,
    /// Every session chatsink knows.
    #[arg(long)]
    pub all: bool,
    /// Sessions updated at or after this time (RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    #[command(flatten)]
    pub storage: StorageArgs,
    #[command(flatten)]
    pub download: DownloadArgs,
    #[command(flatten)]
    pub jobs: JobArgs,
}

#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// Sessions from this time on (RFC 3339), as the listing's `start_time`.
    #[arg(long, value_parser = rfc3339)]
    pub since: Timestamp,
    /// Sessions up to this time (RFC 3339), as the listing's `end_time`. Default: now.
    #[arg(long, value_parser = rfc3339)]
    pub until: Option<Timestamp>,
    /// Only this meeting's sessions (the listing's `associated_id`).
    #[arg(long)]
    pub meeting: Option<String>,
    /// Sessions downloaded and loaded at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub concurrency: u64,
    #[command(flatten)]
    pub storage: StorageArgs,
    #[command(flatten)]
    pub download: DownloadArgs,
    #[command(flatten)]
    pub jobs: JobArgs,
}

fn rfc3339(raw: &str) -> Result<Timestamp, String> {
    Timestamp::parse(raw).map_err(|e| e.to_string())
}

/// A date or a time, as the API's filters take them.
fn date_or_time(raw: &str) -> Result<Timestamp, String> {
    Timestamp::parse_date_or_time(raw).map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
pub struct JobsArgs {
    /// Only jobs in this state.
    #[arg(long, value_parser = ["pending", "running", "failed", "done", "dead"])]
    pub state: Option<String>,
    /// At most this many jobs, newest first.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    #[command(flatten)]
    pub storage: StorageArgs,
}

#[derive(Debug, Args)]
pub struct RejectedArgs {
    /// The session whose rejected rows to list.
    #[arg(long)]
    pub session: String,
    /// At most this many rows, in file order.
    #[arg(long, default_value_t = 1000)]
    pub limit: u32,
    #[command(flatten)]
    pub storage: StorageArgs,
}

/// A setting that cannot be used; `serve` refuses to start with this message, which names where
/// the bad value came from (flag, environment variable or config file key).
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid setting {}: {message}",
    crate::config_source::describe(setting)
)]
pub struct SettingsError {
    /// The setting's environment variable.
    pub setting: &'static str,
    pub message: String,
}

/// A value copied from a template instead of set: the deploy kit ships
/// `replace-with-a-long-random-token` and `change-me-to-a-long-random-token`.
pub fn is_placeholder(value: &str) -> bool {
    let v = value.to_ascii_lowercase();
    [
        "replace-with",
        "replace-me",
        "change-me",
        "changeme",
        "your-token",
        "placeholder",
    ]
    .iter()
    .any(|p| v.contains(p))
}

fn invalid(setting: &'static str, message: impl Into<String>) -> SettingsError {
    SettingsError {
        setting,
        message: message.into(),
    }
}

/// Where the RealtimeKit RSA public key comes from.
#[derive(Debug, Clone)]
pub enum RsaKeySource {
    /// Given as text or read from a file at start-up, parsed once.
    Key(RsaPublicKey),
    /// Fetched from this URL on first need, cached, re-fetched once when a signature fails.
    Url(String),
}

#[derive(Debug, Clone)]
pub enum ReplayApiCredentials {
    Cloudflare {
        base: String,
        account_id: String,
        app_id: String,
        token: SecretString,
    },
    Dyte {
        base: String,
        org_id: String,
        api_key: SecretString,
    },
}

#[derive(Debug, Clone)]
pub struct DownloadSettings {
    pub allow_hosts: Vec<HostPattern>,
    pub allow_http: bool,
    pub max_bytes: u64,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub replay_api: Option<ReplayApiCredentials>,
}

#[derive(Debug, Clone)]
pub struct JobSettings {
    pub max_attempts: u32,
    pub lease: Duration,
    /// Heartbeat silence after which an owner's jobs can be claimed by others.
    pub owner_stale: Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
}

#[derive(Debug, Clone)]
pub struct VerifySettings {
    pub rsa_key: RsaKeySource,
    /// The key for legacy `dyte-signature` deliveries.
    pub dyte_key: RsaKeySource,
    /// At most one re-fetch of a fetched key after failed signatures in this long.
    pub key_refetch_interval: Duration,
    /// Decoded HMAC keys (the bytes after `whsec_`).
    pub hmac_keys: Vec<SecretSlice<u8>>,
    pub insecure_skip_verify: bool,
}

/// Everything `serve` needs, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub database: DatabaseLocation,
    pub database_pool: usize,
    pub data_dir: PathBuf,
    pub dump_store: DumpStoreLocation,
    pub verify: VerifySettings,
    pub max_body_bytes: usize,
    pub read_tokens: Vec<SecretString>,
    pub admin_tokens: Vec<SecretString>,
    pub retention: crate::governance::RetentionSettings,
    pub workers: usize,
    pub http_workers: usize,
    pub ready_max_backlog: i64,
    pub query_budget: Duration,
    /// None: reconcile is off.
    pub reconcile: Option<ReconcileSettings>,
    pub download: DownloadSettings,
    pub jobs: JobSettings,
}

impl DownloadArgs {
    pub fn settings(&self) -> Result<DownloadSettings, SettingsError> {
        let nonempty = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let nonempty_secret = |v: &Option<SecretString>| {
            v.as_ref()
                .map(|s| s.expose_secret().trim())
                .filter(|s| !s.is_empty())
                .map(SecretString::from)
        };
        let cloudflare = (
            nonempty(&self.rtk_account_id),
            nonempty(&self.rtk_app_id),
            nonempty_secret(&self.rtk_api_token),
        );
        let dyte_api_key = nonempty_secret(&self.dyte_api_key);
        for (variable, value) in [
            ("CHATSINK_RTK_API_TOKEN", &cloudflare.2),
            ("CHATSINK_DYTE_API_KEY", &dyte_api_key),
        ] {
            if value
                .as_ref()
                .is_some_and(|v| is_placeholder(v.expose_secret()))
            {
                return Err(invalid(
                    variable,
                    "is the deploy kit's placeholder; set the real credential",
                ));
            }
        }
        let replay_api = match cloudflare {
            (Some(account_id), Some(app_id), Some(token)) => {
                Some(ReplayApiCredentials::Cloudflare {
                    base: self.rtk_api_base.trim_end_matches('/').to_owned(),
                    account_id,
                    app_id,
                    token,
                })
            }
            (None, None, None) => match (nonempty(&self.dyte_org_id), dyte_api_key) {
                (Some(org_id), Some(api_key)) => Some(ReplayApiCredentials::Dyte {
                    base: self.dyte_api_base.trim_end_matches('/').to_owned(),
                    org_id,
                    api_key,
                }),
                (None, None) => None,
                _ => {
                    return Err(invalid(
                        "CHATSINK_DYTE_ORG_ID/CHATSINK_DYTE_API_KEY",
                        "set both or neither",
                    ))
                }
            },
            _ => {
                return Err(invalid(
                    "CHATSINK_RTK_ACCOUNT_ID/CHATSINK_RTK_APP_ID/CHATSINK_RTK_API_TOKEN",
                    "set all three or none",
                ))
            }
        };
        let allow_hosts = self
            .download_allow_hosts
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .map(|pattern| {
                HostPattern::parse(&pattern).map_err(|e| {
                    invalid("CHATSINK_DOWNLOAD_ALLOW_HOSTS", format!("'{pattern}': {e}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if self.download_max_bytes == 0 {
            return Err(invalid("CHATSINK_DOWNLOAD_MAX_BYTES", "must be above 0"));
        }
        Ok(DownloadSettings {
            allow_hosts,
            allow_http: self.download_allow_http,
            max_bytes: self.download_max_bytes,
            connect_timeout: Duration::from_secs(self.download_connect_timeout_secs.max(1)),
            read_timeout: Duration::from_secs(self.download_read_timeout_secs.max(1)),
            replay_api,
        })
    }
}

impl JobArgs {
    pub fn settings(&self) -> Result<JobSettings, SettingsError> {
        if self.job_max_attempts == 0 {
            return Err(invalid("CHATSINK_JOB_MAX_ATTEMPTS", "must be at least 1"));
        }
        if self.job_lease_secs == 0 {
            return Err(invalid("CHATSINK_JOB_LEASE_SECS", "must be at least 1"));
        }
        if self.owner_stale_secs == 0 {
            return Err(invalid("CHATSINK_OWNER_STALE_SECS", "must be at least 1"));
        }
        Ok(JobSettings {
            max_attempts: self.job_max_attempts,
            lease: Duration::from_secs(self.job_lease_secs),
            owner_stale: Duration::from_secs(self.owner_stale_secs),
            backoff_base: Duration::from_millis(self.job_backoff_base_ms.max(1)),
            backoff_cap: Duration::from_secs(self.job_backoff_cap_secs.max(1)),
        })
    }
}

/// `CHATSINK_DATABASE`: a PostgreSQL URL or an SQLite path.
fn dump_store_location(raw: &str) -> Result<DumpStoreLocation, String> {
    DumpStoreLocation::parse(raw)
}

/// `--database` / `CHATSINK_DATABASE`: its errors never repeat the value, which may hold a
/// password (clap's own message would quote it).
#[derive(Clone)]
struct DatabaseLocationParser;

impl clap::builder::TypedValueParser for DatabaseLocationParser {
    type Value = DatabaseLocation;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<DatabaseLocation, clap::Error> {
        let refuse = |why: String| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!(
                    "the database (--database / CHATSINK_DATABASE) {why}. (Its value is not repeated here: it may hold a password.)\n"
                ),
            )
            .with_cmd(cmd)
        };
        let raw = value
            .to_str()
            .ok_or_else(|| refuse("is not UTF-8".into()))?;
        DatabaseLocation::parse(raw).map_err(|e| refuse(e.to_string()))
    }
}

impl StorageArgs {
    /// Before a command that may create the SQLite file: its directory must exist, or be made
    /// with `--create-dirs`.
    pub fn prepare_new_database(&self) -> anyhow::Result<()> {
        let Some(dir) = self
            .database
            .sqlite_path()
            .and_then(std::path::Path::parent)
            .filter(|dir| !dir.as_os_str().is_empty())
        else {
            return Ok(());
        };
        if dir.is_dir() {
            return Ok(());
        }
        if self.create_dirs {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
            return Ok(());
        }
        anyhow::bail!(
            "the database's directory {} does not exist; check --database / CHATSINK_DATABASE for a typo, or pass --create-dirs (CHATSINK_CREATE_DIRS=true) to create it",
            dir.display()
        )
    }
}

/// A secret setting, wrapped from the moment clap reads it so no `Debug` of the arguments can
/// print it.
/// Tokens from a comma-separated setting, each checked: not the deploy kit's placeholder, and
/// long enough not to be guessed.
fn tokens(
    variable: &'static str,
    raw: &[SecretString],
) -> Result<Vec<SecretString>, SettingsError> {
    let tokens: Vec<SecretString> = raw
        .iter()
        .map(|t| t.expose_secret().trim())
        .filter(|t| !t.is_empty())
        .map(SecretString::from)
        .collect();
    if tokens.iter().any(|t| is_placeholder(t.expose_secret())) {
        return Err(invalid(
            variable,
            "a token is the deploy kit's placeholder; generate one (e.g. openssl rand -hex 32)",
        ));
    }
    if tokens.iter().any(|t| t.expose_secret().len() < 16) {
        return Err(invalid(
            variable,
            "each token must be at least 16 characters",
        ));
    }
    Ok(tokens)
}

fn secret(raw: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(raw))
}

/// Why a Standard Webhooks secret is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HmacSecretError {
    #[error("must start with 'whsec_'")]
    Prefix,
    #[error("not base64 after 'whsec_': {0}")]
    Base64(String),
    #[error("is empty after 'whsec_'")]
    Empty,
}

/// Decodes a Standard Webhooks secret, `whsec_<base64>`, to its key bytes, kept in a secret
/// wrapper so they never print.
pub fn parse_hmac_secret(raw: &str) -> Result<SecretSlice<u8>, HmacSecretError> {
    use base64::Engine;
    let encoded = raw
        .trim()
        .strip_prefix("whsec_")
        .ok_or(HmacSecretError::Prefix)?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| HmacSecretError::Base64(e.to_string()))?;
    if key.is_empty() {
        return Err(HmacSecretError::Empty);
    }
    Ok(SecretSlice::from(key))
}

/// A key source from its three settings, named by `variables` (the PEM text, its file, the
/// URL): the PEM text, else the file, else the URL to fetch it from.
fn key_source(
    variables: [&'static str; 3],
    pem: Option<&str>,
    file: Option<&std::path::Path>,
    url: &str,
) -> Result<RsaKeySource, SettingsError> {
    let [pem_variable, file_variable, url_variable] = variables;
    if let Some(pem) = pem {
        return Ok(RsaKeySource::Key(
            parse_rsa_public_key(pem).map_err(|e| invalid(pem_variable, e.to_string()))?,
        ));
    }
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            invalid(
                file_variable,
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        return Ok(RsaKeySource::Key(parse_rsa_public_key(&text).map_err(
            |e| invalid(file_variable, format!("{}: {e}", path.display())),
        )?));
    }
    let url = url.trim();
    url::Url::parse(url).map_err(|e| invalid(url_variable, e.to_string()))?;
    Ok(RsaKeySource::Url(url.to_owned()))
}

impl ServeArgs {
    pub fn settings(&self) -> Result<Settings, SettingsError> {
        let rsa_key = key_source(
            [
                "CHATSINK_RTK_PUBLIC_KEY",
                "CHATSINK_RTK_PUBLIC_KEY_FILE",
                "CHATSINK_RTK_PUBLIC_KEY_URL",
            ],
            self.rtk_public_key.as_deref(),
            self.rtk_public_key_file.as_deref(),
            &self.rtk_public_key_url,
        )?;
        let dyte_key = key_source(
            [
                "CHATSINK_DYTE_PUBLIC_KEY",
                "CHATSINK_DYTE_PUBLIC_KEY_FILE",
                "CHATSINK_DYTE_PUBLIC_KEY_URL",
            ],
            self.dyte_public_key.as_deref(),
            self.dyte_public_key_file.as_deref(),
            &self.dyte_public_key_url,
        )?;
        let mut hmac_keys = Vec::new();
        for (i, secret) in self
            .hmac_secrets
            .iter()
            .map(|s| s.expose_secret())
            .filter(|s| !s.trim().is_empty())
            .enumerate()
        {
            let key = parse_hmac_secret(secret)
                .map_err(|e| invalid("CHATSINK_HMAC_SECRETS", format!("secret #{}: {e}", i + 1)))?;
            hmac_keys.push(key);
        }
        if self.max_body_bytes == 0 {
            return Err(invalid("CHATSINK_MAX_BODY_BYTES", "must be above 0"));
        }
        if self.workers == 0 {
            return Err(invalid("CHATSINK_WORKERS", "must be at least 1"));
        }
        let read_tokens = tokens("CHATSINK_READ_TOKENS", &self.read_tokens)?;
        let admin_tokens = tokens("CHATSINK_ADMIN_TOKENS", &self.admin_tokens)?;
        let days = |ms: Option<i64>| ms.map(|ms| Duration::from_millis(ms as u64));
        Ok(Settings {
            listen: self.listen,
            database: self.storage.database.clone(),
            database_pool: self.storage.database_pool as usize,
            data_dir: self.storage.data_dir.clone(),
            dump_store: self.storage.dump_store(),
            verify: VerifySettings {
                rsa_key,
                dyte_key,
                key_refetch_interval: Duration::from_secs(self.key_refetch_secs),
                hmac_keys,
                insecure_skip_verify: self.insecure_skip_verify,
            },
            max_body_bytes: self.max_body_bytes,
            read_tokens,
            admin_tokens,
            retention: crate::governance::RetentionSettings {
                sessions: days(self.retention_days),
                audit: days(self.audit_retention_days),
            },
            workers: self.workers,
            http_workers: self.http_workers,
            ready_max_backlog: self.ready_max_backlog,
            query_budget: Duration::from_millis(self.query_budget_ms),
            reconcile: (self.reconcile_interval_secs > 0).then(|| ReconcileSettings {
                interval: Duration::from_secs(self.reconcile_interval_secs),
                grace: Duration::from_secs(self.reconcile_grace_secs),
            }),
            download: self.download.settings()?,
            jobs: self.jobs.settings()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boolean_settings_take_a_bare_flag_or_a_value() {
        use clap::Parser;
        let serve = |extra: &[&str]| {
            let mut args = vec!["chatsink", "serve"];
            args.extend_from_slice(extra);
            match Cli::try_parse_from(args).unwrap().command {
                Command::Serve(s) => (s.download.download_allow_http, s.insecure_skip_verify),
                _ => unreachable!(),
            }
        };
        assert_eq!(serve(&[]), (false, false));
        assert_eq!(
            serve(&["--download-allow-http", "--insecure-skip-verify"]),
            (true, true)
        );
        assert_eq!(
            serve(&[
                "--download-allow-http",
                "true",
                "--insecure-skip-verify",
                "false"
            ]),
            (true, false)
        );
        assert_eq!(
            serve(&["--download-allow-http=false", "--insecure-skip-verify=true"]),
            (false, true)
        );
        assert!(
            Cli::try_parse_from(["chatsink", "serve", "--download-allow-http", "maybe"]).is_err()
        );
    }

    #[test]
    fn secrets_never_show_in_the_parsed_arguments() {
        use clap::Parser;
        let cli = Cli::try_parse_from([
            "chatsink",
            "serve",
            "--hmac-secrets",
            "whsec_c2VjcmV0LWhtYWM=",
            "--read-tokens",
            "read-token-0123456789",
            "--rtk-api-token",
            "cloudflare-token-xyz",
            "--rtk-account-id",
            "acct",
            "--rtk-app-id",
            "app",
            "--dyte-api-key",
            "dyte-key-xyz",
        ])
        .unwrap();
        let shown = format!("{cli:?}");
        for secret in [
            "c2VjcmV0LWhtYWM",
            "read-token-0123456789",
            "cloudflare-token-xyz",
            "dyte-key-xyz",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        let Command::Serve(serve) = cli.command else {
            unreachable!()
        };
        let settings = format!("{:?}", serve.settings().unwrap());
        for secret in [
            "read-token-0123456789",
            "cloudflare-token-xyz",
            "secret-hmac",
        ] {
            assert!(!settings.contains(secret), "{secret} in {settings}");
        }
    }

    #[test]
    fn hmac_secrets_must_be_whsec_base64() {
        assert_eq!(
            parse_hmac_secret("whsec_c2VjcmV0").unwrap().expose_secret(),
            b"secret"
        );
        assert!(parse_hmac_secret("c2VjcmV0").is_err());
        assert!(parse_hmac_secret("whsec_!!!").is_err());
        assert!(parse_hmac_secret("whsec_").is_err());
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}

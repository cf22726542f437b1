//! Builds the running service: database, intake writer, verifier, ingest workers, HTTP server;
//! and takes it down in order on SIGTERM / Ctrl-C.

use crate::api::{self, ApiState, ApiTokens, Readiness};
use crate::config::Settings;
use crate::governance::AuditLog;
use crate::head_limit::HeadLimit;
use crate::ingest::{
    spawn_owner_heartbeat, spawn_reconcile, spawn_workers, IngestContext, WorkerPool,
};
use crate::store::{Owner, Store};
use crate::webhook::{self, Verifier, WebhookState};
use actix_service::ServiceFactoryExt;
use actix_web::{web, App};
use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// File in the data dir holding the generated read token when none is configured.
pub const READ_TOKEN_FILE: &str = "read-token";

pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    workers: WorkerPool,
    store: Store,
    owner: Owner,
    owner_heartbeat: tokio::task::JoinHandle<()>,
    /// Tells the reconcile passes and the retention sweep to stop.
    stop_background: tokio::sync::watch::Sender<bool>,
    /// The reconcile passes (absent when reconcile is off).
    reconcile: Option<tokio::task::JoinHandle<()>>,
    sweep: tokio::task::JoinHandle<()>,
    audit: AuditLog,
    audit_writer: tokio::task::JoinHandle<()>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        // The recorder before anything can record: the workers, reconcile and the sweep start
        // below, and a reconcile pass can end (counting what it found) before this function
        // returns. A count recorded before it was lost (a CI run saw the missing-sessions counter
        // one short).
        crate::telemetry::metrics();
        // The port first: a taken port stops start-up before anything else starts.
        let listener = TcpListener::bind(settings.listen).with_context(|| {
            format!(
                "cannot listen on {}; choose another address with --listen or CHATSINK_LISTEN",
                settings.listen
            )
        })?;
        std::fs::create_dir_all(&settings.data_dir).with_context(|| {
            format!("cannot create the data dir {}", settings.data_dir.display())
        })?;
        let store = Store::connect(&settings.database, settings.database_pool)
            .await
            .with_context(|| format!("cannot open the database {}", settings.database))?;
        let intake = store.intake()?;
        // Before any job is claimed: clears the owners known to be gone (a predecessor killed
        // before it could release its jobs), so their jobs are claimed at once.
        let owner = store
            .register_owner("serve")
            .await
            .context("cannot register as an owner of job leases")?;
        let owner_heartbeat =
            spawn_owner_heartbeat(store.clone(), owner.clone(), settings.jobs.owner_stale);
        let verifier = Verifier::new(&settings.verify)
            .map_err(|e| anyhow::anyhow!("signature settings: {e}"))?;
        let read_tokens = resolve_read_tokens(&settings.read_tokens, &settings.data_dir)?;

        let ingest = Arc::new(IngestContext::new(
            store.clone(),
            owner.clone(),
            &settings.data_dir,
            &settings.dump_store,
            &settings.download,
            settings.jobs.clone(),
        )?);
        let dumps = ingest.dumps.clone();
        let workers = spawn_workers(ingest.clone(), settings.workers);
        store.watch_jobs(workers.wake());
        let (stop_reconcile, stopping) = tokio::sync::watch::channel(false);
        let reconcile = spawn_reconcile(
            ingest,
            settings.reconcile.clone(),
            workers.wake(),
            stopping.clone(),
        );
        let sweep = crate::governance::spawn_sweep(
            store.clone(),
            dumps.clone(),
            owner.clone(),
            settings.retention.clone(),
            settings.jobs.owner_stale,
            stopping,
        );
        let (audit, audit_writer) = AuditLog::start(store.clone());
        let webhook_state = web::Data::new(WebhookState {
            verifier,
            intake,
            max_body_bytes: settings.max_body_bytes,
            wake: workers.wake(),
        });
        let api_state = web::Data::new(ApiState::new(
            store.clone(),
            ApiTokens {
                read: read_tokens,
                admin: settings.admin_tokens.clone(),
            },
            Readiness {
                workers_alive: workers.alive(),
                workers_expected: settings.workers,
                max_backlog: settings.ready_max_backlog,
            },
            settings.query_budget,
            audit.clone(),
            dumps,
        ));

        let port = listener.local_addr()?.port();
        let app = move || {
            App::new()
                .wrap(tracing_actix_web::TracingLogger::default())
                // Outermost: no layer below it (the request log included) sees a secret sent
                // in the URL.
                .wrap(actix_web::middleware::from_fn(api::redact_secrets))
                .app_data(webhook_state.clone())
                .app_data(api_state.clone())
                .configure(webhook::configure)
                .configure(api::configure)
                .configure(crate::ui::configure)
                .default_service(web::to(api::no_such_route))
        };
        // actix-web's HttpServer, spelled out so each connection passes through HeadLimit
        // first; timeouts are HttpServer's defaults.
        let mut builder = actix_server::Server::build().shutdown_timeout(30);
        if settings.http_workers > 0 {
            builder = builder.workers(settings.http_workers);
        }
        let server = builder.listen("chatsink-http", listener, move || {
            let http = actix_http::HttpService::<HeadLimit<TcpStream>, _, _>::build()
                .keep_alive(actix_http::KeepAlive::Timeout(Duration::from_secs(5)))
                .client_request_timeout(Duration::from_secs(5))
                .client_disconnect_timeout(Duration::from_secs(1))
                .h1(actix_service::map_config(app(), |_| {
                    actix_web::dev::AppConfig::default()
                }));
            actix_service::fn_service(|io: TcpStream| async move {
                let peer = io.peer_addr().ok();
                let _ = io.set_nodelay(true);
                Ok::<_, actix_http::error::DispatchError>((HeadLimit::new(io), peer))
            })
            .and_then(http)
        })?;
        tracing::info!(address = %settings.listen, port, database = %settings.database, "chatsink listening");
        Ok(Self {
            port,
            server: server.run(),
            workers,
            store,
            owner,
            owner_heartbeat,
            stop_background: stop_reconcile,
            reconcile,
            sweep,
            audit,
            audit_writer,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server as SIGTERM would (used by `chatsink demo --once`).
    pub fn stop_handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGTERM / Ctrl-C, then: stop accepting and finish in-flight requests (actix),
    /// finish or release in-flight jobs, retire as an owner, let the store close (for SQLite,
    /// checkpoint the WAL into the database file).
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.server.await?;
        tracing::info!("HTTP server stopped; stopping ingest workers");
        let _ = self.stop_background.send(true);
        if let Some(handle) = self.reconcile {
            let _ = handle.await;
        }
        // A sweep may be half-way through a large purge: each step is its own commit and the
        // rest is still expired at the next start, so it stops here rather than holding up the
        // shutdown.
        self.sweep.abort();
        let _ = self.sweep.await;
        // Every request answered has its audit entry written before the process ends.
        self.audit.flush().await;
        drop(self.audit);
        self.audit_writer.abort();
        self.workers.shutdown().await;
        self.owner_heartbeat.abort();
        if let Err(e) = self.store.retire_owner(&self.owner).await {
            tracing::warn!(error = %e, "could not retire as an owner of job leases");
        }
        if let Err(e) = self.store.shutdown().await {
            tracing::warn!(error = %e, "closing the database at shutdown failed");
        }
        tracing::info!("chatsink stopped");
        Ok(())
    }
}

/// The configured read tokens, or the one generated in the data dir on first start.
fn resolve_read_tokens(
    configured: &[SecretString],
    data_dir: &Path,
) -> anyhow::Result<Vec<SecretString>> {
    if !configured.is_empty() {
        return Ok(configured.to_vec());
    }
    let path: PathBuf = data_dir.join(READ_TOKEN_FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let token = text.trim().to_owned();
        if token.len() >= 16 {
            tracing::info!(path = %path.display(), "query API token read from the data dir");
            return Ok(vec![SecretString::from(token)]);
        }
    }
    let token = SecretString::from(crate::governance::tokens::random_hex());
    write_private(&path, token.expose_secret())?;
    tracing::warn!(path = %path.display(), "no CHATSINK_READ_TOKENS set: generated a query API token; send it as 'Authorization: Bearer <token>'");
    eprintln!("chatsink: query API token written to {}", path.display());
    Ok(vec![token])
}

/// Writes a secret file with mode 0600 whatever was there before: into a new temp file created
/// 0600, synced, then renamed over `path` (an existing file's looser mode is not inherited).
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

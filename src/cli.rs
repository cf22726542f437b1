//! What each subcommand does, once clap has parsed it. Errors print as one clear line and a
//! non-zero exit; results go to stdout.

use crate::config::{
    AuditArgs, BackfillArgs, BackupArgs, Command, ConfigCommand, CopyArchiveArgs, EraseArgs,
    ErasuresCommand, IngestArgs, JobsArgs, MigrateArgs, PurgeArgs, RejectedArgs, ReprocessArgs,
    ServeArgs, StorageArgs, TokenCommand,
};
use crate::domain::{JobOutcome, JobState, ReprocessSelector, SessionId, Timestamp};
use crate::ingest::{self, IngestContext};
use crate::startup::Application;
use crate::store::{DatabaseLocation, Store};
use anyhow::Context;
use std::process::ExitCode;

pub fn run(command: Command) -> ExitCode {
    let result = match command {
        Command::Serve(args) => runtime().and_then(|rt| rt.block_on(serve(args))),
        Command::Ingest(args) => runtime().and_then(|rt| rt.block_on(ingest_command(args))),
        Command::Reprocess(args) => runtime().and_then(|rt| rt.block_on(reprocess_command(args))),
        Command::Backfill(args) => runtime().and_then(|rt| rt.block_on(backfill_command(args))),
        Command::Jobs(args) => runtime().and_then(|rt| rt.block_on(jobs_command(args))),
        Command::Rejected(args) => runtime().and_then(|rt| rt.block_on(rejected_command(args))),
        Command::Config(ConfigCommand::Check(args)) => {
            crate::config_file::check(&args).map(|text| {
                print!("{text}");
                ExitCode::SUCCESS
            })
        }
        Command::Token(command) => runtime().and_then(|rt| rt.block_on(token_command(command))),
        Command::Erase(args) => runtime().and_then(|rt| rt.block_on(erase_command(args))),
        Command::Purge(args) => runtime().and_then(|rt| rt.block_on(purge_command(args))),
        Command::Audit(args) => runtime().and_then(|rt| rt.block_on(audit_command(args))),
        Command::Erasures(command) => {
            runtime().and_then(|rt| rt.block_on(erasures_command(command)))
        }
        Command::Backup(args) => backup_command(args),
        Command::Migrate(args) => runtime().and_then(|rt| rt.block_on(migrate_command(args))),
        Command::CopyArchive(args) => {
            runtime().and_then(|rt| rt.block_on(copy_archive_command(args)))
        }
        Command::SendTestWebhook(args) => {
            runtime().and_then(|rt| rt.block_on(crate::demo::send_test_webhook(args)))
        }
        Command::Demo(args) => runtime().and_then(|rt| rt.block_on(crate::demo::demo(args))),
        Command::Probe(args) => runtime().and_then(|rt| rt.block_on(crate::demo::probe(&args.url))),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("chatsink: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    args.storage.prepare_new_database()?;
    let settings = args.settings()?;
    let app = Application::build(settings).await?;
    app.run_until_stopped().await?;
    Ok(ExitCode::SUCCESS)
}

async fn ingest_command(args: IngestArgs) -> anyhow::Result<ExitCode> {
    let session = args
        .session
        .as_deref()
        .map(SessionId::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--session {e}"))?;
    args.storage.prepare_new_database()?;
    let store = Store::connect(&args.storage.database, args.storage.database_pool as usize)
        .await
        .with_context(|| format!("cannot open the database {}", args.storage.database))?;
    let started = std::time::Instant::now();
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("cannot open {}", args.file.display()))?;
    // A progress bar on a terminal; plain log lines (one per session) otherwise.
    let bar = progress_bar(file.metadata()?.len());
    let input: Box<dyn std::io::Read + Send> = match &bar {
        Some(bar) => Box::new(bar.wrap_read(file)),
        None => Box::new(file),
    };
    let progress = bar.clone();
    let results = ingest::ingest_reader(
        &store,
        input,
        &args.file,
        session.as_ref(),
        move |session, report| match &progress {
            Some(bar) => bar.set_message(format!("{session}: {} rows", report.rows_loaded)),
            None => {
                tracing::info!(session_id = %session, rows_loaded = report.rows_loaded, rows_rejected = report.rows_rejected, "session loaded")
            }
        },
    )
    .await?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let loaded: i64 = results.iter().map(|(_, r)| r.rows_loaded).sum();
    let rejected: i64 = results.iter().map(|(_, r)| r.rows_rejected).sum();
    println!(
        "ingested {}: {} session(s), {loaded} row(s) loaded, {rejected} rejected, in {:.2}s",
        args.file.display(),
        results.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

async fn reprocess_command(args: ReprocessArgs) -> anyhow::Result<ExitCode> {
    let selector = if !args.session.is_empty() {
        let ids = args
            .session
            .iter()
            .map(|s| SessionId::parse(s).map_err(|e| anyhow::anyhow!("--session '{s}' {e}")))
            .collect::<anyhow::Result<_>>()?;
        ReprocessSelector::Sessions(ids)
    } else if args.failed {
        ReprocessSelector::LastJobIn(JobState::Failed)
    } else if args.dead {
        ReprocessSelector::LastJobIn(JobState::Dead)
    } else if let Some(since) = &args.since {
        let t = Timestamp::parse(since).map_err(|e| anyhow::anyhow!("--since {e}"))?;
        ReprocessSelector::Since(t.millis())
    } else {
        ReprocessSelector::All
    };
    let runner = JobRunner::start(
        "reprocess",
        &args.storage,
        &args.download.settings()?,
        &args.jobs,
    )
    .await?;
    let ctx = &runner.ctx;
    let lines = Lines::new();
    let outcomes = ingest::reprocess(ctx, &selector, |o| {
        let line = match &o.result {
            Ok(r) => format!(
                "{}\tok\t{} loaded, {} rejected",
                o.session_id, r.rows_loaded, r.rows_rejected
            ),
            Err(e) => format!("{}\tfailed\t{e}", o.session_id),
        };
        lines.print(&line, "reprocessed");
    })
    .await;
    runner.finish().await;
    let outcomes = outcomes?;
    lines.finish();
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    println!(
        "reprocessed {} session(s): {} ok, {failed} failed",
        outcomes.len(),
        outcomes.len() - failed
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn backfill_command(args: BackfillArgs) -> anyhow::Result<ExitCode> {
    let download = args.download.settings()?;
    if download.replay_api.is_none() {
        anyhow::bail!(
            "backfill lists sessions through the RealtimeKit API, and no credentials are configured: \
             set CHATSINK_RTK_ACCOUNT_ID, CHATSINK_RTK_APP_ID and CHATSINK_RTK_API_TOKEN \
             (or CHATSINK_DYTE_ORG_ID and CHATSINK_DYTE_API_KEY)"
        );
    }
    if let Some(meeting) = &args.meeting {
        if meeting.trim().is_empty() || meeting.chars().any(char::is_control) {
            anyhow::bail!("--meeting must be a meeting id");
        }
    }
    let until = args.until;
    if until.is_some_and(|until| until < args.since) {
        anyhow::bail!("--until is before --since");
    }
    let query = ingest::ListingQuery {
        since: args.since,
        until,
        meeting: args.meeting.clone(),
    };
    let runner = JobRunner::start("backfill", &args.storage, &download, &args.jobs).await?;
    let ctx = &runner.ctx;
    let api = ctx.api.clone().expect("credentials were checked above");
    let lines = Lines::new();
    let summary = ingest::backfill(ctx, &api, &query, args.concurrency as usize, |event| {
        let (what, detail) = match &event.pulled {
            ingest::Pulled::Done(JobOutcome::NoChat, _) => ("no-chat", String::new()),
            ingest::Pulled::Done(JobOutcome::Unchanged, _) => {
                ("skipped", "loaded from the same dump already".to_owned())
            }
            ingest::Pulled::Done(JobOutcome::Erased, _) => {
                ("skipped", "erased, or purged by retention".to_owned())
            }
            ingest::Pulled::Done(_, r) => (
                "loaded",
                format!("{} loaded, {} rejected", r.rows_loaded, r.rows_rejected),
            ),
            ingest::Pulled::Skipped(skip) => ("skipped", skip.as_str().to_owned()),
            ingest::Pulled::Live => (
                "live",
                "not ended yet; reconcile pulls it once it ends".to_owned(),
            ),
            ingest::Pulled::Failed(e) => ("failed", e.clone()),
        };
        let line = format!("{}\t{what}\t{detail}", event.session);
        lines.print(&line, "done");
    })
    .await;
    runner.finish().await;
    lines.finish();
    let summary = summary?;
    println!(
        "backfill: {} listed, {} loaded, {} with no chat, {} skipped, {} live, {} failed",
        summary.listed,
        summary.loaded,
        summary.no_chat,
        summary.skipped,
        summary.live,
        summary.failed.len()
    );
    for why in &summary.not_understood {
        eprintln!("chatsink: a listing entry was not used: {why}");
    }
    if let Some(shortfall) = summary.shortfall {
        eprintln!("chatsink: error: {shortfall}; run backfill again to pick up the rest");
    }
    if summary.failed.is_empty() && summary.shortfall.is_none() {
        return Ok(ExitCode::SUCCESS);
    }
    if summary.failed.is_empty() {
        return Ok(ExitCode::FAILURE);
    }
    eprintln!(
        "chatsink: {} session(s) could not be loaded (their jobs retry in serve, or run backfill again):",
        summary.failed.len()
    );
    for (session, error) in &summary.failed {
        eprintln!("  {session}: {error}");
    }
    Ok(ExitCode::FAILURE)
}

async fn jobs_command(args: JobsArgs) -> anyhow::Result<ExitCode> {
    let store =
        Store::connect_existing(&args.storage.database, args.storage.database_pool as usize)
            .await?;
    let state = args.state.as_deref().map(JobState::parse).transpose()?;
    let list = store.jobs(state, args.limit).await?;
    println!(
        "{:>6}  {:<9}  {:<8}  {:<9}  {:>8}  {:<24}  {:<36}  last error",
        "id", "kind", "state", "outcome", "attempts", "updated", "session"
    );
    for job in list {
        println!(
            "{:>6}  {:<9}  {:<8}  {:<9}  {:>8}  {:<24}  {:<36}  {}",
            job.id,
            job.kind.as_str(),
            job.state.as_str(),
            job.outcome.map_or("-", JobOutcome::as_str),
            job.attempts,
            Timestamp::from_millis(job.updated_ms).to_rfc3339(),
            job.session_id,
            job.last_error.unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn existing_store(storage: &StorageArgs) -> anyhow::Result<Store> {
    Ok(Store::connect_existing(&storage.database, storage.database_pool as usize).await?)
}

fn when(ms: Option<i64>) -> String {
    ms.map_or_else(|| "-".into(), |ms| Timestamp::from_millis(ms).to_rfc3339())
}

async fn token_command(command: TokenCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::Create(args) => {
            let store = existing_store(&args.storage).await?;
            let new = crate::governance::NewToken {
                name: args.name.clone(),
                meetings: args.meetings.clone(),
                expires_in_ms: args.expires,
                admin: args.admin,
            };
            let secret = crate::governance::create_token(&store, &new).await?;
            // The secret alone on stdout, so `TOKEN=$(chatsink token create ...)` works.
            println!("{secret}");
            eprintln!(
                "chatsink: token '{}' created ({}{}); it is shown this once and kept only as a hash",
                new.name.trim(),
                if new.admin {
                    "admin".to_owned()
                } else if new.meetings.is_empty() {
                    "reads every meeting".to_owned()
                } else {
                    format!("reads meetings {}", new.meetings.join(", "))
                },
                args.expires
                    .map(|ms| format!(", expires {}", when(Some(crate::domain::timestamp::now_ms() + ms))))
                    .unwrap_or_default()
            );
        }
        TokenCommand::List(args) => {
            let store = existing_store(&args.storage).await?;
            let now = crate::domain::timestamp::now_ms();
            println!(
                "{:<24}  {:<8}  {:<24}  {:<24}  {:<24}  {:<24}  scope",
                "name", "state", "created", "expires", "last used", "revoked"
            );
            for token in store.tokens().await? {
                let state = if token.revoked_ms.is_some() {
                    "revoked"
                } else if !token.usable_at(now) {
                    "expired"
                } else {
                    "active"
                };
                let scope = match (&token.meetings, token.admin) {
                    (_, true) => "admin".to_owned(),
                    (None, false) => "read: every meeting".to_owned(),
                    (Some(m), false) => format!("read: {}", m.join(", ")),
                };
                println!(
                    "{:<24}  {:<8}  {:<24}  {:<24}  {:<24}  {:<24}  {}",
                    token.name,
                    state,
                    when(Some(token.created_ms)),
                    when(token.expires_ms),
                    when(token.last_used_ms),
                    when(token.revoked_ms),
                    scope
                );
            }
        }
        TokenCommand::Revoke(args) => {
            let store = existing_store(&args.storage).await?;
            if !store.revoke_token(&args.name).await? {
                anyhow::bail!("no token named '{}' (see chatsink token list)", args.name);
            }
            eprintln!("chatsink: token '{}' revoked", args.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn erase_command(args: EraseArgs) -> anyhow::Result<ExitCode> {
    use crate::domain::EraseTarget;
    let target = match (args.target.user, args.target.message, args.target.session) {
        (Some(user), _, _) => EraseTarget::User(user),
        (_, Some(message), _) => EraseTarget::Message(message),
        (_, _, Some(session)) => EraseTarget::Session(
            SessionId::parse(&session)
                .map_err(|e| anyhow::anyhow!("--session: {e}"))?
                .as_str()
                .to_owned(),
        ),
        _ => unreachable!("clap requires one target"),
    };
    if target.id().trim().is_empty() {
        anyhow::bail!("--{}: give an id", target.kind());
    }
    let store = existing_store(&args.storage).await?;
    let dumps = ingest::DumpStore::open(&args.storage.dump_store(), &args.storage.data_dir)?;
    let done = crate::governance::erase(&store, &dumps, &target).await?;
    let removed = &done.erased;
    store
        .record_audit(vec![crate::governance::erasure::deletion_entry(
            crate::domain::CLI_ERASE_ACTOR,
            &format!("erase --{}", target.kind()),
            target.id(),
            removed,
        )])
        .await?;
    println!(
        "erased {} {}: {} messages, {} rejected rows, {} sessions, {} webhook deliveries, {} kept dumps ({} steps and {} index merges, the longest {} ms)",
        target.kind(),
        target.id(),
        removed.messages,
        removed.rejected_rows,
        removed.sessions,
        removed.deliveries,
        removed.dumps,
        done.steps,
        done.merges,
        done.held.longest().as_millis()
    );
    Ok(ExitCode::SUCCESS)
}

async fn erasures_command(command: ErasuresCommand) -> anyhow::Result<ExitCode> {
    match command {
        ErasuresCommand::Export(args) => {
            let store = existing_store(&args.storage).await?;
            let records = store.erasures().await?;
            let text = crate::governance::erasures_to_ndjson(&records);
            if args.file.as_os_str() == "-" {
                print!("{text}");
            } else {
                write_new(&args.file, &text)?;
                eprintln!(
                    "chatsink: {} erasure(s) written to {}",
                    records.len(),
                    args.file.display()
                );
            }
        }
        ErasuresCommand::Apply(args) => {
            let text = if args.file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&args.file)
                    .with_context(|| format!("reading {}", args.file.display()))?
            };
            let list = crate::governance::erasures_from_ndjson(&text).map_err(|e| {
                anyhow::anyhow!("{}: {e}; nothing was applied", args.file.display())
            })?;
            let store = existing_store(&args.storage).await?;
            let dumps =
                ingest::DumpStore::open(&args.storage.dump_store(), &args.storage.data_dir)?;
            let applied = crate::governance::apply_erasures(&store, &dumps, &list).await?;
            let removed = &applied.removed;
            store
                .record_audit(vec![crate::governance::erasure::deletion_entry(
                    crate::domain::CLI_ERASURES_APPLY_ACTOR,
                    "erasures apply",
                    &format!("entries={}", applied.entries),
                    removed,
                )])
                .await?;
            println!(
                "applied {} erasure(s): {} messages, {} rejected rows, {} sessions, {} webhook deliveries, {} kept dumps removed",
                applied.entries,
                removed.messages,
                removed.rejected_rows,
                removed.sessions,
                removed.deliveries,
                removed.dumps
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks `question` on the terminal: whether the answer is `yes`. Without a terminal (cron, a
/// pipe) nobody can answer: false.
fn confirmed(question: &str) -> anyhow::Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Ok(false);
    }
    eprint!("{question}");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim().eq_ignore_ascii_case("yes"))
}

/// Writes `text` to a file that must not exist yet.
fn write_new(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("writing {} (it must not exist yet)", path.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

async fn purge_command(args: PurgeArgs) -> anyhow::Result<ExitCode> {
    let store = existing_store(&args.storage).await?;
    let dumps = ingest::DumpStore::open(&args.storage.dump_store(), &args.storage.data_dir)?;
    let ms = |ms: i64| std::time::Duration::from_millis(ms as u64);
    let plan = crate::governance::purge_plan(&store, ms(args.older_than)).await?;
    let date = |ms: i64| crate::domain::Timestamp::from_millis(ms).to_rfc3339();
    let summary = format!(
        "sessions whose last message is before {} (the cut-off): {} sessions, {} of the archive's {} messages, {} loaded dumps",
        date(plan.cutoff_ms),
        plan.sessions.len(),
        plan.messages,
        plan.archive_messages,
        plan.dumps
    );
    if args.dry_run {
        println!("would purge {summary}");
        for session in &plan.sessions {
            println!("  {session}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let (Some(why), false) = (plan.surprise(), args.yes) {
        if !confirmed(&format!("purge {summary}?\n{why}. Type yes to purge: "))? {
            anyhow::bail!(
                "not purged: {why} ({summary}). Check with --dry-run; run again with --yes if that is meant"
            );
        }
    }
    let purged = crate::governance::purge(
        &store,
        &dumps,
        Some(ms(args.older_than)),
        args.audit_older_than.map(ms),
    )
    .await?;
    store
        .record_audit(vec![crate::governance::erasure::deletion_entry(
            crate::domain::CLI_PURGE_ACTOR,
            "purge",
            &format!("sessions={}", purged.sessions),
            &purged.removed.erased,
        )])
        .await?;
    println!(
        "purged {} sessions: {} messages, {} rejected rows, {} webhook deliveries, {} kept dumps; {} audit entries ({} steps and {} index merges, p99 {} ms, the longest {} ms)",
        purged.sessions,
        purged.removed.erased.messages,
        purged.removed.erased.rejected_rows,
        purged.removed.erased.deliveries,
        purged.removed.erased.dumps,
        purged.audit_entries,
        purged.removed.steps,
        purged.removed.merges,
        purged.removed.held.quantile(0.99).as_millis(),
        purged.removed.held.longest().as_millis()
    );
    Ok(ExitCode::SUCCESS)
}

async fn audit_command(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let store = existing_store(&args.storage).await?;
    let query = crate::domain::AuditQuery {
        since_ms: args.since.map(|t| t.millis()),
        token: args.token.clone(),
        limit: args.limit,
        ..Default::default()
    };
    println!(
        "{:<24}  {:<20}  {:<6}  {:>6}  {:>8}  route?filters",
        "time", "token", "method", "status", "rows"
    );
    let mut entries = store
        .audit_page(query, std::time::Duration::from_secs(3600))
        .await?;
    // Entries are numbered as the writer commits its batches, not when the requests came:
    // listed newest first by their time.
    entries.sort_by(|a, b| b.at_ms.cmp(&a.at_ms).then(b.id.cmp(&a.id)));
    for e in entries {
        println!(
            "{:<24}  {:<20}  {:<6}  {:>6}  {:>8}  {}{}{}",
            when(Some(e.at_ms)),
            e.token,
            e.method,
            e.status,
            e.rows.map_or_else(|| "-".into(), |n| n.to_string()),
            e.route,
            if e.filters.is_empty() { "" } else { "?" },
            e.filters
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn rejected_command(args: RejectedArgs) -> anyhow::Result<ExitCode> {
    let store =
        Store::connect_existing(&args.storage.database, args.storage.database_pool as usize)
            .await?;
    // An operator's read: no budget to speak of.
    let budget = std::time::Duration::from_secs(3600);
    if store.session(&args.session, None, budget).await?.is_none() {
        anyhow::bail!("unknown session: {}", args.session);
    }
    let rows = store
        .rejected_page(&args.session, None, args.limit, budget)
        .await?;
    println!("{:>8}  {:<40}  raw", "line", "reason");
    for row in &rows {
        println!(
            "{:>8}  {:<40}  {}",
            row.line,
            row.reason,
            crate::api::escape_bytes(&row.raw)
        );
    }
    eprintln!("{} rejected row(s) in session {}", rows.len(), args.session);
    Ok(ExitCode::SUCCESS)
}

/// A command that runs jobs itself (`reprocess`, `backfill`): registered as an owner of job
/// leases with a heartbeat for as long as it runs, retired at the end.
struct JobRunner {
    ctx: IngestContext,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl JobRunner {
    async fn start(
        role: &str,
        storage: &crate::config::StorageArgs,
        download: &crate::config::DownloadSettings,
        jobs: &crate::config::JobArgs,
    ) -> anyhow::Result<Self> {
        let store =
            Store::connect_existing(&storage.database, storage.database_pool as usize).await?;
        let jobs = jobs.settings()?;
        let owner = store.register_owner(role).await?;
        let heartbeat =
            ingest::spawn_owner_heartbeat(store.clone(), owner.clone(), jobs.owner_stale);
        let ctx = IngestContext::new(
            store,
            owner,
            &storage.data_dir,
            &storage.dump_store(),
            download,
            jobs,
        )?;
        Ok(Self { ctx, heartbeat })
    }

    async fn finish(self) {
        self.heartbeat.abort();
        if let Err(e) = self.ctx.store.retire_owner(&self.ctx.owner).await {
            tracing::warn!(error = %e, "could not retire as an owner of job leases");
        }
    }
}

/// One result line per session on stdout; on a terminal, a spinner on stderr counts them.
struct Lines(Option<indicatif::ProgressBar>);

impl Lines {
    fn new() -> Self {
        Self(
            std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
                let spinner = indicatif::ProgressBar::new_spinner();
                spinner.enable_steady_tick(std::time::Duration::from_millis(120));
                spinner
            }),
        )
    }

    /// Prints `line`; the spinner says how many session(s) are `what` so far.
    fn print(&self, line: &str, what: &str) {
        match &self.0 {
            Some(spinner) => {
                spinner.suspend(|| println!("{line}"));
                spinner.inc(1);
                spinner.set_message(format!("{} session(s) {what}", spinner.position()));
            }
            None => println!("{line}"),
        }
    }

    fn finish(&self) {
        if let Some(spinner) = &self.0 {
            spinner.finish_and_clear();
        }
    }
}

/// A byte-progress bar when stderr is a terminal.
fn progress_bar(len: u64) -> Option<indicatif::ProgressBar> {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return None;
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
        )
        .expect("a valid template"),
    );
    Some(bar)
}

/// `chatsink migrate`: pending migrations applied, versions reported.
async fn migrate_command(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    args.storage.prepare_new_database()?;
    let location = &args.storage.database;
    let done = crate::store::migrate(location, args.storage.database_pool as usize)
        .await
        .with_context(|| format!("cannot migrate the database {location}"))?;
    if done.from == done.to {
        println!(
            "{location} is at schema version {} (nothing to do)",
            done.to
        );
    } else {
        println!(
            "migrated {location} from schema version {} to {}",
            done.from, done.to
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `chatsink copy-archive --from FILE --to URL`: the copy is [`crate::store::copy_archive`];
/// this checks the two ends are what they must be and reports what moved.
async fn copy_archive_command(args: CopyArchiveArgs) -> anyhow::Result<ExitCode> {
    let DatabaseLocation::Sqlite(from) = &args.from else {
        anyhow::bail!(
            "--from {}: give the SQLite archive to copy (a file path); copying between PostgreSQL databases is pg_dump's job",
            args.from
        );
    };
    let DatabaseLocation::Postgres(to) = &args.to else {
        anyhow::bail!(
            "--to {}: give the PostgreSQL database to copy into (a postgres:// URL); an SQLite copy is `chatsink backup`",
            args.to
        );
    };
    let started = std::time::Instant::now();
    let copied = crate::store::copy_archive(from, to)
        .await
        .with_context(|| format!("cannot copy {} to {to}", from.display()))?;
    for (table, rows) in &copied.tables {
        eprintln!("  {table}: {rows} row(s)");
    }
    println!(
        "copied {} to {to} in {:.1} s, every id kept; point CHATSINK_DATABASE at it (and CHATSINK_DUMP_STORE at the same dumps)",
        from.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// The two paths of an SQLite backup.
struct BackupPaths {
    path: std::path::PathBuf,
    database: std::path::PathBuf,
}

/// `chatsink backup PATH`: the copy itself is [`crate::store::backup`]; this checks the paths and
/// reports.
/// `PATH.erasures.ndjson`: where `backup` writes the erasure list of the backup at `PATH`.
pub fn erasure_list_beside(backup: &std::path::Path) -> std::path::PathBuf {
    let mut name = backup.as_os_str().to_owned();
    name.push(".erasures.ndjson");
    std::path::PathBuf::from(name)
}

fn backup_command(args: BackupArgs) -> anyhow::Result<ExitCode> {
    let database = match &args.database {
        DatabaseLocation::Sqlite(path) => path.clone(),
        DatabaseLocation::Postgres(url) => anyhow::bail!(
            "{url} is a PostgreSQL database: back it up with pg_dump (for example \
             `pg_dump --format=custom --file=chatsink.dump \"$CHATSINK_DATABASE\"`); \
             `chatsink backup` copies SQLite files"
        ),
    };
    let args = BackupPaths {
        path: args.path,
        database,
    };
    for path in [&args.path, &erasure_list_beside(&args.path)] {
        if path.exists() {
            anyhow::bail!("{} already exists; give a new path", path.display());
        }
    }
    if !args.database.is_file() {
        anyhow::bail!("no database at {}", args.database.display());
    }
    // SQLite's own error for a missing folder names the file three times over.
    let folder = match args.path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => std::path::PathBuf::from("."),
    };
    if !folder.is_dir() {
        anyhow::bail!(
            "cannot write the backup to {}: the folder {} does not exist",
            args.path.display(),
            folder.display()
        );
    }
    let started = std::time::Instant::now();
    let bytes = crate::store::backup(&args.database, &args.path).with_context(|| {
        format!(
            "backing up {} to {}",
            args.database.display(),
            args.path.display()
        )
    })?;
    // The backup's erasure list beside it: restoring an older backup is followed by applying
    // the newest list, so nothing erased since comes back.
    let list_path = erasure_list_beside(&args.path);
    let records = crate::store::sqlite_erasures(&args.path)
        .with_context(|| format!("reading the erasure list of {}", args.path.display()))?;
    write_new(&list_path, &crate::governance::erasures_to_ndjson(&records))?;
    println!(
        "backed up {} to {} ({bytes} bytes, integrity ok) in {:.2}s; its erasure list ({} entries) is in {}",
        args.database.display(),
        args.path.display(),
        started.elapsed().as_secs_f64(),
        records.len(),
        list_path.display()
    );
    Ok(ExitCode::SUCCESS)
}

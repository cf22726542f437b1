//! What each subcommand does, once clap has parsed it. Errors print as one clear line and a
//! non-zero exit; results go to stdout.

use crate::config::{Command, IngestArgs, JobsArgs, ReprocessArgs, ServeArgs};
use crate::domain::{SessionId, Timestamp};
use crate::ingest::{self, IngestContext};
use crate::startup::Application;
use crate::store::{jobs, Database, JobState, ReprocessSelector};
use anyhow::Context;
use std::process::ExitCode;

pub fn run(command: Command) -> ExitCode {
    let result = match command {
        Command::Serve(args) => runtime().and_then(|rt| rt.block_on(serve(args))),
        Command::Ingest(args) => ingest_command(args),
        Command::Reprocess(args) => runtime().and_then(|rt| rt.block_on(reprocess_command(args))),
        Command::Jobs(args) => jobs_command(args),
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
    let settings = args.settings()?;
    let app = Application::build(settings).await?;
    app.run_until_stopped().await?;
    Ok(ExitCode::SUCCESS)
}

fn ingest_command(args: IngestArgs) -> anyhow::Result<ExitCode> {
    let session = args
        .session
        .as_deref()
        .map(SessionId::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--session {e}"))?;
    let db = Database::open(&args.storage.database).with_context(|| {
        format!(
            "cannot open the database {}",
            args.storage.database.display()
        )
    })?;
    let started = std::time::Instant::now();
    let results = ingest::ingest_file(&db, &args.file, session.as_ref(), |session, report| {
        tracing::info!(session_id = %session, rows_loaded = report.rows_loaded, rows_rejected = report.rows_rejected, "session loaded");
    })?;
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
    let db = Database::open(&args.storage.database).with_context(|| {
        format!(
            "cannot open the database {}",
            args.storage.database.display()
        )
    })?;
    let ctx = IngestContext::new(
        db,
        args.storage.data_dir.clone(),
        &args.download.settings()?,
        args.jobs.settings()?,
    )?;
    let outcomes = ingest::reprocess(&ctx, &selector, |o| match &o.result {
        Ok(r) => println!(
            "{}\tok\t{} loaded, {} rejected",
            o.session_id, r.rows_loaded, r.rows_rejected
        ),
        Err(e) => println!("{}\tfailed\t{e}", o.session_id),
    })
    .await?;
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

fn jobs_command(args: JobsArgs) -> anyhow::Result<ExitCode> {
    let db = Database::open(&args.storage.database).with_context(|| {
        format!(
            "cannot open the database {}",
            args.storage.database.display()
        )
    })?;
    let state = args.state.as_deref().and_then(JobState::parse);
    let list = jobs::list_jobs(&*db.conn()?, state, args.limit)?;
    println!(
        "{:>6}  {:<9}  {:<8}  {:>8}  {:<24}  {:<36}  last error",
        "id", "kind", "state", "attempts", "updated", "session"
    );
    for job in list {
        let kind = match job.kind {
            crate::store::JobKind::Delivery => "delivery",
            crate::store::JobKind::Reprocess => "reprocess",
        };
        println!(
            "{:>6}  {:<9}  {:<8}  {:>8}  {:<24}  {:<36}  {}",
            job.id,
            kind,
            job.state.as_str(),
            job.attempts,
            Timestamp::from_millis(job.updated_ms).to_rfc3339(),
            job.session_id,
            job.last_error.unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

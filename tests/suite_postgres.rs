//! The integration suite again, with every app on PostgreSQL: the same test files as
//! `tests/suite/main.rs`, compiled into a second binary in which `helpers::on_postgres()` is true,
//! so each app gets a fresh database on the test server (`suite/pg.rs`). Tests of SQLite's own
//! storage say so and return; without a PostgreSQL server each app says so (a visible skip, a
//! failure under `CI=true`) and runs on SQLite.
//!
//! Left out: what does not depend on the backend or is about SQLite itself (bulk layout and
//! migrations, the deploy kit, pure parsers, the README's block, the seam check, the crash and
//! fault suites, which run served processes on SQLite files), and the PostgreSQL tests of
//! `suite/postgres.rs`, which the first binary runs. `suite/main.rs` checks the two lists.

#[path = "suite/helpers.rs"]
mod helpers;
#[path = "suite/pg.rs"]
mod pg;
#[path = "suite/site.rs"]
mod site;

#[path = "suite/budget.rs"]
mod budget;
#[path = "suite/cli.rs"]
mod cli;
#[path = "suite/dump_store.rs"]
mod dump_store;
#[path = "suite/governance.rs"]
mod governance;
#[path = "suite/hostile.rs"]
mod hostile;
#[path = "suite/ingest.rs"]
mod ingest;
#[path = "suite/model.rs"]
mod model;
#[path = "suite/openapi.rs"]
mod openapi;
#[path = "suite/ops.rs"]
mod ops;
#[path = "suite/pull.rs"]
mod pull;
#[path = "suite/query.rs"]
mod query;
#[path = "suite/receive.rs"]
mod receive;

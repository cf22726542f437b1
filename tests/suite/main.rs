//! Integration tests: the real app on a random loopback port, a temp database, real signatures,
//! and real HTTP servers on 127.0.0.1 playing S3 and the Chat Replay API.

mod helpers;

mod browser;
mod budget;
mod bulk;
mod cli;
mod crash;
mod deploy;
mod dump_store;
mod faults;
mod fuzz;
mod governance;
mod hostile;
mod ingest;
mod model;
mod openapi;
mod ops;
mod pg;
mod postgres;
mod pull;
mod query;
mod readme;
mod receive;
mod seam;
mod site;

//! chatsink: receives RealtimeKit's `meeting.chatSynced` webhooks, archives each session's chat
//! dump in SQLite and serves it to analysts. Modules in the order the data flows:

pub mod cli;
pub mod config;
pub mod config_file;
pub mod config_source;
pub mod demo;
pub mod head_limit;
pub mod startup;
pub mod telemetry;

pub mod api;
pub mod domain;
pub mod dumpgen;
pub mod error_chain;
pub mod failpoint;
pub mod governance;
pub mod ingest;
pub mod store;
pub mod ui;
pub mod webhook;

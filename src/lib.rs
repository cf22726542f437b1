//! chatsink: receives RealtimeKit's `meeting.chatSynced` webhooks, archives each session's chat
//! dump in SQLite and serves it to analysts. Modules in the order the data flows:

pub mod config;
pub mod telemetry;
pub mod startup;
pub mod cli;

pub mod domain;
pub mod webhook;
pub mod ingest;
pub mod store;
pub mod api;

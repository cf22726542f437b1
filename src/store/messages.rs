//! Read-side queries over messages, sessions and users (the query API).

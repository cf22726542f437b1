//! Who may read what, and for how long: API tokens with scopes ([`tokens`]), erasure and
//! retention ([`erasure`]), and the audit log ([`audit`]). Each works through the store seam, so
//! it is the same on SQLite and PostgreSQL.

pub mod audit;
pub mod erasure;
pub mod tokens;

pub use audit::AuditLog;
pub use erasure::{
    apply_erasures, empty_trash, erase, erasures_from_ndjson, erasures_to_ndjson, purge,
    purge_plan, spawn_sweep, Applied, PurgePlan, Purged, RetentionSettings,
};
pub use tokens::{create_token, hash_secret, new_secret, NewToken};

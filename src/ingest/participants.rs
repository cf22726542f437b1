//! Who each sender is in the app's own terms: after a session loads (and, for sessions that
//! loaded without them, on reconcile's passes), its participants are fetched from RealtimeKit
//! (`GET .../sessions/{id}/participants`, within the API's shared rate limit) and kept. A fetch
//! that fails leaves the session loaded as it is; the next reprocess or reconcile pass tries
//! again.

use super::walk::all_participants;
use super::RtkApi;
use crate::domain::SessionId;
use crate::store::Store;

/// Fetches and keeps the session's participants; whether they are kept now. Never fails the
/// load it follows: a failure is logged and counted.
pub async fn fetch_participants(store: &Store, api: Option<&RtkApi>, session: &SessionId) -> bool {
    let Some(api) = api else {
        return false;
    };
    let fetched = match all_participants(api, session).await {
        Ok(list) => list,
        Err(e) => {
            metrics::counter!("chatsink_participant_fetch_failures_total").increment(1);
            tracing::warn!(session_id = %session, error = %e, "the session's participants could not be fetched; the next reprocess or reconcile pass tries again");
            return false;
        }
    };
    let count = fetched.len();
    match store.store_participants(session, fetched).await {
        Ok(kept) => {
            if kept {
                tracing::debug!(session_id = %session, participants = count, "participants kept");
            }
            kept
        }
        Err(e) => {
            metrics::counter!("chatsink_participant_fetch_failures_total").increment(1);
            tracing::warn!(session_id = %session, error = %e, "the session's participants could not be stored");
            false
        }
    }
}

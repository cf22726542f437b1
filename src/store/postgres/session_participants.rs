//! A session's participants on PostgreSQL: the same use cases and guarantees as SQLite's
//! `session_participants.rs` (replaced whole, without the erased, under the erasure lock).

use super::governance::{erasure_list, hold_erasures, session_erased};
use super::retry::retrying;
use super::{text, PgStore};
use crate::domain::{Participant, SessionId};
use crate::store::StoreError;

const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

impl PgStore {
    /// Replaces the session's participants with `list` (less erased users); false when the
    /// session is not in the archive (never loaded, erased or purged).
    pub async fn store_participants(
        &self,
        session: SessionId,
        list: Vec<Participant>,
    ) -> Result<bool, StoreError> {
        let (session, list) = (&session, &list);
        retrying("store a session's participants", || async move {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            hold_erasures(&tx).await?;
            let Some(row) = tx
                .query_opt(
                    "SELECT session_key FROM sessions WHERE session_id = $1 FOR UPDATE",
                    &[&session.as_str()],
                )
                .await?
            else {
                return Ok(false);
            };
            let key: i64 = row.get(0);
            if session_erased(&*tx, session.as_str()).await? {
                return Ok(false);
            }
            let erased = erasure_list(&tx).await?;
            tx.execute(
                "DELETE FROM session_participants WHERE session_key = $1",
                &[&key],
            )
            .await?;
            let insert = tx
                .prepare(
                    "INSERT INTO session_participants (session_key, participant_id, rtk_user_id,
                         custom_participant_id, display_name, preset_name, joined_ms, left_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT DO NOTHING",
                )
                .await?;
            for p in list.iter().filter(|p| !erased.names_participant(p)) {
                tx.execute(
                    &insert,
                    &[
                        &key,
                        &text::put(&p.participant_id),
                        &text::put_opt(&p.user_id),
                        &text::put_opt(&p.custom_participant_id),
                        &text::put_opt(&p.display_name),
                        &text::put_opt(&p.preset_name),
                        &p.joined_at.map(|t| t.millis()),
                        &p.left_at.map(|t| t.millis()),
                    ],
                )
                .await?;
            }
            tx.execute(
                &format!("UPDATE sessions SET participants_ms = {NOW_MS} WHERE session_key = $1"),
                &[&key],
            )
            .await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    /// Of `sessions`, those loaded whose participants were never fetched.
    pub async fn sessions_without_participants(
        &self,
        sessions: Vec<SessionId>,
    ) -> Result<Vec<SessionId>, StoreError> {
        let client = self.pool.get().await?;
        let ids: Vec<&str> = sessions.iter().map(SessionId::as_str).collect();
        let missing: Vec<String> = client
            .query(
                "SELECT session_id FROM sessions
                 WHERE session_id = ANY($1) AND status = 'loaded' AND participants_ms IS NULL",
                &[&ids],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        Ok(sessions
            .into_iter()
            .filter(|s| missing.iter().any(|m| m == s.as_str()))
            .collect())
    }
}

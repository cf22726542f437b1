//! A seeded generator of realistic RealtimeKit chat dumps: 85% text of varied length (commas,
//! quotes, newlines, emoji, CJK, RTL), 10% image URLs, 5% file JSON payloads, 2% pinned, 5%
//! edited, UUIDs for sessions, meetings and participants as RealtimeKit writes them, in the CSV
//! format of RealtimeKit's chat export. The same seed gives the same bytes. Used by
//! `chatsink demo`, `chatsink send-test-webhook` and the benchmarks.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::Write;

pub const HEADER: &str =
    "id,participantId,sessionId,meetingId,displayName,pinned,isEdited,payloadType,payload,createdAt";

const WORDS: &[&str] = &[
    "the",
    "deploy",
    "meeting",
    "agenda",
    "thanks",
    "quarter",
    "numbers",
    "slide",
    "link",
    "ok",
    "question",
    "budget",
    "roadmap",
    "customer",
    "release",
    "bug",
    "fix",
    "review",
    "call",
    "later",
    "yes",
    "no",
    "maybe",
    "today",
    "tomorrow",
    "\"quoted\"",
    "comma,",
    "a,b,c",
    "🎉",
    "👍",
    "😀",
    "🚀",
    "你好",
    "世界",
    "会议",
    "谢谢",
    "مرحبا",
    "بالعالم",
    "שלום",
    "עולם",
    "naïve",
    "café",
    "Zoë",
    "日本語",
    "한국어",
    "line\nbreak",
    "tab\tstop",
    "100%",
    "$5,000",
];

const NAMES: &[&str] = &[
    "Ann Lee",
    "Bo Chen",
    "Carla Díaz",
    "Dmitri",
    "Émile",
    "Fatima Al-Sayed",
    "グエン",
    "李雷",
    "O'Brien, Pat",
    "\"Zed\" Z",
    "Yusuf",
    "Hana",
    "Ilse",
    "Jon",
    "Kai",
    "Lena",
];

/// Session `s` of a generated set: a UUID (as RealtimeKit's session ids are) derived from
/// `prefix` and `s`, so different prefixes give different sessions.
pub fn session_id(prefix: &str, s: usize) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{prefix}{s}"));
    let bytes: [u8; 16] = digest[..16].try_into().expect("16 of 32 bytes");
    uuid_from(bytes)
}

fn uuid_from(bytes: [u8; 16]) -> String {
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// Meetings and participants the generated sessions draw from.
const MEETINGS: usize = 2_000;
const USERS: usize = 20_000;

/// Writes `sessions` sessions of `rows_per_session` rows each, named by [`session_id`].
/// Returns the rows written.
pub fn write_dump(
    out: &mut impl Write,
    seed: u64,
    prefix: &str,
    sessions: usize,
    rows_per_session: usize,
) -> std::io::Result<u64> {
    let names: Vec<String> = (0..sessions).map(|s| session_id(prefix, s)).collect();
    write_sessions(out, seed, &names, rows_per_session)
}

/// A generated session as a webhook would describe it: the meeting its messages carry and the
/// span they were sent in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedSession {
    pub session_id: String,
    pub meeting_id: String,
    pub started_ms: i64,
    pub ended_ms: i64,
}

/// Where generated sessions start when no start is given: session `s` an hour after `s - 1`.
const DEFAULT_START_MS: i64 = 1_780_000_000_000;

/// Writes a dump holding these sessions, `rows_per_session` rows each.
pub fn write_sessions(
    out: &mut impl Write,
    seed: u64,
    sessions: &[String],
    rows_per_session: usize,
) -> std::io::Result<u64> {
    let written = write_sessions_from(out, seed, sessions, rows_per_session, DEFAULT_START_MS)?;
    Ok(written.len() as u64 * rows_per_session as u64)
}

/// [`write_sessions`] with the first session starting at `start_ms` (the next an hour later,
/// and so on); returns each session as a webhook for it should describe it.
pub fn write_sessions_from(
    out: &mut impl Write,
    seed: u64,
    sessions: &[String],
    rows_per_session: usize,
    start_ms: i64,
) -> std::io::Result<Vec<GeneratedSession>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let meetings: Vec<String> = (0..MEETINGS).map(|_| uuid_from(rng.gen())).collect();
    let users: Vec<String> = (0..USERS).map(|_| uuid_from(rng.gen())).collect();
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(out);
    writer.write_record(HEADER.split(','))?;
    let mut generated = Vec::with_capacity(sessions.len());
    for (s, session) in sessions.iter().enumerate() {
        let session = session.as_str();
        let meeting = &meetings[rng.gen_range(0..MEETINGS)];
        let participants: Vec<(&str, &str)> = (0..rng.gen_range(3..40))
            .map(|_| {
                (
                    users[rng.gen_range(0..USERS)].as_str(),
                    NAMES[rng.gen_range(0..NAMES.len())],
                )
            })
            .collect();
        let started_ms = start_ms + s as i64 * 3_600_000;
        let mut ms = started_ms;
        for _ in 0..rows_per_session {
            ms += rng.gen_range(10..4000);
            let (user, name) = &participants[rng.gen_range(0..participants.len())];
            let roll = rng.gen_range(0..100);
            let (kind, payload) = if roll < 85 {
                ("TEXT_MESSAGE", text(&mut rng))
            } else if roll < 95 {
                (
                    "IMAGE_MESSAGE",
                    format!(
                        "https://rtk-uploads.example.com/{session}/{:016x}.png",
                        rng.gen::<u64>()
                    ),
                )
            } else {
                (
                    "FILE_MESSAGE",
                    serde_json::json!({
                        "link": format!("https://rtk-uploads.example.com/{session}/{:016x}", rng.gen::<u64>()),
                        "name": format!("report {} \"final\", v{}.pdf", rng.gen_range(1..100), rng.gen_range(1..9)),
                        "size": rng.gen_range(1_000..50_000_000),
                    })
                    .to_string(),
                )
            };
            let pinned = rng.gen_range(0..100) < 2;
            let edited = rng.gen_range(0..100) < 5;
            let id = format!("{:016x}{:016x}", rng.gen::<u64>(), rng.gen::<u64>());
            let created = chrono::DateTime::from_timestamp_millis(ms)
                .expect("in range")
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string();
            writer.write_record([
                id.as_str(),
                user,
                session,
                meeting,
                name,
                if pinned { "true" } else { "false" },
                if edited { "true" } else { "false" },
                kind,
                &payload,
                &created,
            ])?;
        }
        generated.push(GeneratedSession {
            session_id: session.to_owned(),
            meeting_id: meeting.clone(),
            started_ms,
            ended_ms: ms + 1_000,
        });
    }
    writer.flush()?;
    Ok(generated)
}

/// Text of varied length: mostly short chat lines, some paragraphs.
fn text(rng: &mut StdRng) -> String {
    let words = match rng.gen_range(0..100) {
        0..=59 => rng.gen_range(1..12),
        60..=89 => rng.gen_range(12..40),
        _ => rng.gen_range(40..120),
    };
    let mut out = String::new();
    for i in 0..words {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(WORDS[rng.gen_range(0..WORDS.len())]);
    }
    out
}

/// A `meeting.chatSynced` body as RealtimeKit sends it, for a session whose dump is at
/// `url`: an hour-long session that ended now, in a meeting of its own.
pub fn chat_synced_body(session: &str, url: &str) -> Vec<u8> {
    let now = chrono::Utc::now().timestamp_millis();
    let digest = <sha2::Sha256 as sha2::Digest>::digest(format!("meeting-of-{session}"));
    let meeting = uuid_from(digest[..16].try_into().expect("16 of 32 bytes"));
    chat_synced_body_for(
        &GeneratedSession {
            session_id: session.to_owned(),
            meeting_id: meeting,
            started_ms: now - 3_600_000,
            ended_ms: now,
        },
        url,
    )
}

/// A `meeting.chatSynced` body for a generated session, with its meeting and times.
pub fn chat_synced_body_for(session: &GeneratedSession, url: &str) -> Vec<u8> {
    let iso = |ms: i64| crate::domain::Timestamp::from_millis(ms).to_rfc3339();
    let expiry = chrono::Utc::now().timestamp_millis() + 24 * 3_600_000;
    serde_json::to_vec(&serde_json::json!({
        "event": "meeting.chatSynced",
        "sessionId": session.session_id,
        "meetingId": session.meeting_id,
        "title": "chatsink test meeting",
        "chatDownloadUrl": url,
        "chatDownloadUrlExpiry": iso(expiry),
        "createdAt": iso(session.started_ms - 60_000),
        "startedAt": iso(session.started_ms),
        "endedAt": iso(session.ended_ms),
        "organizedBy": {"id": "org-test", "name": "chatsink test"}
    }))
    .expect("serialises")
}

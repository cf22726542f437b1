//! A seeded generator of realistic RealtimeKit chat dumps: 85% text of varied length (commas,
//! quotes, newlines, emoji, CJK, RTL), 10% image URLs, 5% file JSON payloads, 2% pinned, 5%
//! edited, UUIDs for sessions, meetings and participants as RealtimeKit writes them, in the CSV
//! format of FACTS.md. The same seed gives the same bytes. Used by
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

/// Writes a dump holding these sessions, `rows_per_session` rows each.
pub fn write_sessions(
    out: &mut impl Write,
    seed: u64,
    sessions: &[String],
    rows_per_session: usize,
) -> std::io::Result<u64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let meetings: Vec<String> = (0..MEETINGS).map(|_| uuid_from(rng.gen())).collect();
    let users: Vec<String> = (0..USERS).map(|_| uuid_from(rng.gen())).collect();
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(out);
    writer.write_record(HEADER.split(','))?;
    let mut written = 0;
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
        let mut ms: i64 = 1_780_000_000_000 + s as i64 * 3_600_000;
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
            written += 1;
        }
    }
    writer.flush()?;
    Ok(written)
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

/// A `meeting.chatSynced` body as RealtimeKit sends it (FACTS.md), for a session whose dump is at
/// `url`.
pub fn chat_synced_body(session: &str, url: &str) -> Vec<u8> {
    let now = chrono::Utc::now();
    let iso = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    serde_json::to_vec(&serde_json::json!({
        "event": "meeting.chatSynced",
        "sessionId": session,
        "meetingId": format!("meeting-of-{session}"),
        "title": "chatsink test meeting",
        "chatDownloadUrl": url,
        "chatDownloadUrlExpiry": iso(now + chrono::Duration::hours(24)),
        "createdAt": iso(now - chrono::Duration::hours(1)),
        "startedAt": iso(now - chrono::Duration::hours(1)),
        "endedAt": iso(now),
        "organizedBy": {"id": "org-test", "name": "chatsink test"}
    }))
    .expect("serialises")
}

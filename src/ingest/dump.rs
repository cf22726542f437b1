//! Turns a chat dump CSV into messages, streaming: one record buffer, whatever the file size.
//!
//! Columns are matched by header name (any order, a UTF-8 BOM tolerated). A column chatsink has no
//! field for is kept with its message (`extra`), and `targetUserIds` marks a private message.
//! A row that cannot be parsed becomes a [`RejectedRow`] with its line, reason and raw bytes;
//! the rest still load. A missing required column fails the whole dump: nothing can load.

use crate::domain::{
    parse_bool, parse_target_user_ids, ChatMessage, LoadRow, MessageKind, RejectedRow, RowSource,
    SessionId, Timestamp, TimestampError,
};
use csv::ByteRecord;
use std::collections::VecDeque;
use std::io::Read;
use std::sync::{Arc, Mutex};

/// The columns of RealtimeKit's chat dump CSV, in the order `DumpReader::columns` keeps their
/// positions.
pub const REQUIRED_COLUMNS: [&str; 10] = [
    "id",
    "participantId",
    "sessionId",
    "meetingId",
    "displayName",
    "pinned",
    "isEdited",
    "payloadType",
    "payload",
    "createdAt",
];

const ID: usize = 0;
const PARTICIPANT: usize = 1;
const SESSION: usize = 2;
const MEETING: usize = 3;
const DISPLAY_NAME: usize = 4;
const PINNED: usize = 5;
const EDITED: usize = 6;
const PAYLOAD_TYPE: usize = 7;
const PAYLOAD: usize = 8;
const CREATED: usize = 9;

#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("the dump is empty: no header row")]
    Empty,
    #[error("the dump's header lacks required column(s): {}", .0.join(", "))]
    MissingColumns(Vec<&'static str>),
    #[error("reading the dump failed: {0}")]
    Read(#[from] csv::Error),
}

impl DumpError {
    /// Header problems will not go away by trying again; read errors might.
    pub fn is_permanent(&self) -> bool {
        !matches!(self, Self::Read(_))
    }
}

/// Streams a dump's rows as [`LoadRow`]s. A read error ends the iteration and is kept in
/// [`DumpReader::error`]: the caller must then discard what it loaded.
pub struct DumpReader<R: Read> {
    reader: csv::Reader<CountLines<R>>,
    lines: Arc<Mutex<NewlineIndex>>,
    columns: [usize; REQUIRED_COLUMNS.len()],
    /// `targetUserIds`, when the dump has it.
    targets: Option<usize>,
    /// Every other column: its position and its header, as the dump names it.
    extra: Vec<(usize, String)>,
    field_count: usize,
    record: ByteRecord,
    error: Option<csv::Error>,
    session: Option<SessionId>,
}

impl<R: Read> DumpReader<R> {
    pub fn new(input: R) -> Result<Self, DumpError> {
        let lines = Arc::new(Mutex::new(NewlineIndex::default()));
        let counted = CountLines {
            inner: input,
            read: 0,
            index: lines.clone(),
        };
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .has_headers(true)
            .from_reader(counted);
        let headers = reader.byte_headers()?.clone();
        if headers.is_empty() || (headers.len() == 1 && headers[0].is_empty()) {
            return Err(DumpError::Empty);
        }
        let given: Vec<String> = headers
            .iter()
            .enumerate()
            .map(|(i, raw)| {
                let raw = if i == 0 {
                    raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw)
                } else {
                    raw
                };
                String::from_utf8_lossy(raw).trim().to_owned()
            })
            .collect();
        let names: Vec<String> = given.iter().map(|n| n.to_ascii_lowercase()).collect();
        let mut columns = [0; REQUIRED_COLUMNS.len()];
        let mut missing = Vec::new();
        for (slot, wanted) in REQUIRED_COLUMNS.iter().enumerate() {
            match names.iter().position(|n| n == &wanted.to_ascii_lowercase()) {
                Some(i) => columns[slot] = i,
                None => missing.push(*wanted),
            }
        }
        if !missing.is_empty() {
            return Err(DumpError::MissingColumns(missing));
        }
        let targets = names.iter().position(|n| n == "targetuserids");
        let mut extra: Vec<(usize, String)> = Vec::new();
        for (i, name) in given.iter().enumerate() {
            if columns.contains(&i) || Some(i) == targets {
                continue;
            }
            // Two columns of one name (or none) are both kept, the second under a name of its own.
            let mut key = if name.is_empty() {
                format!("column{}", i + 1)
            } else {
                name.clone()
            };
            if extra.iter().any(|(_, k)| *k == key) {
                key = format!("{key}#{}", i + 1);
            }
            extra.push((i, key));
        }
        Ok(Self {
            reader,
            lines,
            columns,
            targets,
            extra,
            field_count: headers.len(),
            record: ByteRecord::new(),
            error: None,
            session: None,
        })
    }

    /// Rejects, with their line and raw bytes, rows that belong to another session than this.
    pub fn only_session(mut self, session: SessionId) -> Self {
        self.session = Some(session);
        self
    }

    /// The read error that ended the iteration early, if any.
    pub fn error(&mut self) -> Option<csv::Error> {
        self.error.take()
    }

    fn parse_record(&self) -> LoadRow {
        let record = &self.record;
        let start = record.position().map(|p| p.byte()).unwrap_or(0);
        let end = self.reader.position().byte();
        let line = self.lines.lock().expect("line index").line_of(start);
        let reject = |reason: String| {
            let raw = self
                .lines
                .lock()
                .expect("line index")
                .take_bytes(start, end);
            let session_id = record
                .get(self.columns[SESSION])
                .and_then(|b| std::str::from_utf8(b).ok())
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty());
            LoadRow::Rejected(RejectedRow {
                session_id,
                line,
                reason,
                raw: record_bytes(raw),
            })
        };
        if record.len() != self.field_count {
            return reject(format!(
                "expected {} fields, found {}",
                self.field_count,
                record.len()
            ));
        }
        let mut fields: [&str; REQUIRED_COLUMNS.len()] = [""; REQUIRED_COLUMNS.len()];
        for (slot, &index) in self.columns.iter().enumerate() {
            match std::str::from_utf8(&record[index]) {
                Ok(text) => fields[slot] = text,
                Err(_) => {
                    return reject(format!(
                        "invalid UTF-8 in column {}",
                        REQUIRED_COLUMNS[slot]
                    ))
                }
            }
        }
        let id = fields[ID].trim();
        if id.is_empty() {
            return reject("empty id".into());
        }
        let session_id = match SessionId::parse(fields[SESSION]) {
            Ok(s) => s,
            Err(e) => return reject(format!("bad sessionId: {e}")),
        };
        if let Some(expected) = self.session.as_ref().filter(|s| **s != session_id) {
            return reject(RejectedRow::other_session_reason(
                truncate(session_id.as_str()),
                expected,
            ));
        }
        let Some(pinned) = parse_bool(fields[PINNED]) else {
            return reject(format!(
                "bad boolean in pinned: '{}'",
                truncate(fields[PINNED])
            ));
        };
        let Some(edited) = parse_bool(fields[EDITED]) else {
            return reject(format!(
                "bad boolean in isEdited: '{}'",
                truncate(fields[EDITED])
            ));
        };
        let created = match Timestamp::parse(fields[CREATED]) {
            Ok(t) => t,
            Err(TimestampError::OutOfRange(_)) => {
                return reject(format!(
                    "time in createdAt is outside the years 0000-9999: '{}'",
                    truncate(fields[CREATED])
                ))
            }
            Err(TimestampError::Unparsable(_)) => {
                return reject(format!(
                    "bad time in createdAt: '{}'",
                    truncate(fields[CREATED])
                ))
            }
        };
        let mut extra = serde_json::Map::new();
        for (index, name) in &self.extra {
            match std::str::from_utf8(&record[*index]) {
                Ok(text) => {
                    extra.insert(name.clone(), serde_json::Value::String(text.to_owned()));
                }
                Err(_) => return reject(format!("invalid UTF-8 in column {}", truncate(name))),
            }
        }
        let target_user_ids = match self.targets.map(|i| std::str::from_utf8(&record[i])) {
            None => None,
            Some(Ok(text)) => parse_target_user_ids(text),
            Some(Err(_)) => return reject("invalid UTF-8 in column targetUserIds".into()),
        };
        let kind = MessageKind::from_payload_type(fields[PAYLOAD_TYPE]);
        let payload = fields[PAYLOAD].to_owned();
        let (link, file_name, file_size) = ChatMessage::typed_fields(&kind, &payload);
        LoadRow::Message(ChatMessage {
            id: id.to_owned(),
            session_id,
            meeting_id: fields[MEETING].trim().to_owned(),
            user_id: fields[PARTICIPANT].trim().to_owned(),
            display_name: fields[DISPLAY_NAME].to_owned(),
            pinned,
            edited,
            kind,
            link,
            file_name,
            file_size,
            payload,
            created,
            extra: (!self.extra.is_empty()).then(|| serde_json::Value::Object(extra).to_string()),
            target_user_ids,
        })
    }
}

impl<R: Read> Iterator for DumpReader<R> {
    type Item = LoadRow;

    fn next(&mut self) -> Option<LoadRow> {
        if self.error.is_some() {
            return None;
        }
        match self.reader.read_byte_record(&mut self.record) {
            Ok(true) => {
                let row = self.parse_record();
                let end = self.reader.position().byte();
                self.lines.lock().expect("line index").pass(end);
                Some(row)
            }
            Ok(false) => None,
            Err(e) => {
                self.error = Some(e);
                None
            }
        }
    }
}

/// Rows handed over from a parser thread in batches, so parsing the CSV overlaps the SQLite work
/// of loading it. At most a few batches wait in the channel: memory stays bounded.
pub struct ParsedAhead {
    batches: std::sync::mpsc::Receiver<Batch>,
    current: std::vec::IntoIter<LoadRow>,
    failure: ReadFailure,
    /// The rows ended (whole or not): later calls answer `None` and change nothing.
    ended: bool,
}

/// Why a [`ParsedAhead`]'s rows ended early, readable while the rows are borrowed (a loader checks
/// it before committing what it read).
#[derive(Debug, Clone, Default)]
pub struct ReadFailure(std::sync::Arc<std::sync::OnceLock<String>>);

impl ReadFailure {
    pub fn get(&self) -> Option<String> {
        self.0.get().cloned()
    }

    fn set(&self, error: String) {
        let _ = self.0.set(error);
    }
}

enum Batch {
    Rows(Vec<LoadRow>),
    End(Option<csv::Error>),
}

const BATCH: usize = 1024;

impl ParsedAhead {
    pub fn spawn<R: Read + Send + 'static>(mut reader: DumpReader<R>) -> Self {
        let (sender, batches) = std::sync::mpsc::sync_channel(4);
        std::thread::Builder::new()
            .name("chatsink-parse".into())
            .spawn(move || loop {
                let rows: Vec<LoadRow> = reader.by_ref().take(BATCH).collect();
                let last = rows.len() < BATCH;
                if !rows.is_empty() && sender.send(Batch::Rows(rows)).is_err() {
                    return; // the loader stopped listening
                }
                if last {
                    let _ = sender.send(Batch::End(reader.error()));
                    return;
                }
            })
            .expect("spawn the parser thread");
        Self {
            batches,
            current: Vec::new().into_iter(),
            failure: ReadFailure::default(),
            ended: false,
        }
    }

    /// The read error that ended the rows early, if any: the caller must discard what it loaded.
    pub fn error(&self) -> Option<String> {
        self.failure.get()
    }

    /// A handle on [`ParsedAhead::error`] that outlives borrowing the rows.
    pub fn failure(&self) -> ReadFailure {
        self.failure.clone()
    }
}

impl RowSource for ParsedAhead {
    fn failure(&self) -> Option<String> {
        self.error()
    }
}

impl Iterator for ParsedAhead {
    type Item = LoadRow;

    fn next(&mut self) -> Option<LoadRow> {
        loop {
            if let Some(row) = self.current.next() {
                return Some(row);
            }
            if self.ended {
                return None;
            }
            self.ended = true;
            match self.batches.recv() {
                Ok(Batch::Rows(rows)) => {
                    self.ended = false;
                    self.current = rows.into_iter();
                }
                Ok(Batch::End(error)) => {
                    if let Some(e) = error {
                        self.failure.set(e.to_string());
                    }
                    return None;
                }
                Err(_) => {
                    self.failure
                        .set("the dump parser stopped unexpectedly".into());
                    return None;
                }
            }
        }
    }
}

/// Counts newlines as the CSV reader pulls bytes, so a row's line number is exact. (The csv
/// crate's own `Position::line` runs one low after a CRLF terminator, which dumps use.)
struct CountLines<R> {
    inner: R,
    read: u64,
    index: Arc<Mutex<NewlineIndex>>,
}

/// Offsets of newlines read but not yet passed by a row start, plus how many were passed; and
/// the bytes read from the current row's start on, so a rejected row keeps its exact bytes.
#[derive(Default)]
struct NewlineIndex {
    passed: u64,
    ahead: VecDeque<u64>,
    /// Bytes read from offset `window_start` on (the csv reader reads ahead by its buffer).
    window: Vec<u8>,
    window_start: u64,
}

/// Window bytes already passed that are dropped in one go once they are this many (and at
/// least half the window): dropping per row would move the read-ahead once per row.
const WINDOW_COMPACT_AT: usize = 256 * 1024;

impl NewlineIndex {
    /// 1-based line of a row starting at byte `start`. The csv reader may report a row's start
    /// at the `\n` of the CRLF before it, so newlines at `start` itself count as before the row.
    /// Row starts only grow, so passed newlines are dropped and memory stays small.
    fn line_of(&mut self, start: u64) -> u64 {
        while self.ahead.front().is_some_and(|&offset| offset <= start) {
            self.ahead.pop_front();
            self.passed += 1;
        }
        self.passed + 1
    }

    /// The bytes from `start` to `end` as read; everything before `end` may then be dropped.
    fn take_bytes(&mut self, start: u64, end: u64) -> Vec<u8> {
        let from = start.saturating_sub(self.window_start) as usize;
        let to = (end.saturating_sub(self.window_start) as usize).min(self.window.len());
        let bytes = self.window.get(from..to).unwrap_or_default().to_vec();
        self.pass(end);
        bytes
    }

    /// Rows before `end` are done: their bytes go once enough of them have piled up.
    fn pass(&mut self, end: u64) {
        let done = (end.saturating_sub(self.window_start) as usize).min(self.window.len());
        if done >= WINDOW_COMPACT_AT && done * 2 >= self.window.len() {
            self.window.drain(..done);
            self.window_start += done as u64;
        }
    }
}

impl<R: Read> Read for CountLines<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            let mut index = self.index.lock().expect("line index");
            index
                .ahead
                .extend(memchr::memchr_iter(b'\n', &buf[..n]).map(|i| self.read + i as u64));
            index.window.extend_from_slice(&buf[..n]);
            self.read += n as u64;
        }
        Ok(n)
    }
}

/// A record's bytes as read, without the line terminators around it (the csv reader may place
/// a row's start on the `\n` of the CRLF before it).
fn record_bytes(mut raw: Vec<u8>) -> Vec<u8> {
    let end = raw.len()
        - raw
            .iter()
            .rev()
            .take_while(|&&b| b == b'\n' || b == b'\r')
            .count();
    raw.truncate(end);
    let start = raw
        .iter()
        .take_while(|&&b| b == b'\n' || b == b'\r')
        .count();
    raw.drain(..start);
    raw
}

fn truncate(value: &str) -> &str {
    match value.char_indices().nth(40) {
        Some((i, _)) => &value[..i],
        None => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "id,participantId,sessionId,meetingId,displayName,pinned,isEdited,payloadType,payload,createdAt\n";

    fn rows(csv: &str) -> Vec<LoadRow> {
        DumpReader::new(csv.as_bytes()).unwrap().collect()
    }

    /// Rows that ended whole stay ended: asking again is no read error (a loader that reads in
    /// chunks asks once more after the last one).
    #[test]
    fn parsed_ahead_rows_that_ended_stay_ended_without_an_error() {
        let csv =
            format!("{HEADER}m1,u,s-1,m,A,false,false,TEXT_MESSAGE,hi,2026-06-03T10:00:00Z\n");
        let mut ahead =
            ParsedAhead::spawn(DumpReader::new(std::io::Cursor::new(csv.into_bytes())).unwrap());
        assert_eq!(ahead.by_ref().count(), 1);
        assert!(ahead.next().is_none());
        assert!(ahead.next().is_none());
        assert_eq!(ahead.error(), None);
    }

    #[test]
    fn a_text_row_becomes_a_message() {
        let rows = rows(&format!("{HEADER}m1,u1,s1,mt1,Ann,true,0,TEXT_MESSAGE,\"hi, \"\"you\"\"\",2026-06-03T10:00:00.000Z\n"));
        let LoadRow::Message(m) = &rows[0] else {
            panic!("{rows:?}")
        };
        assert_eq!(
            (m.id.as_str(), m.user_id.as_str(), m.pinned, m.edited),
            ("m1", "u1", true, false)
        );
        assert_eq!(m.text(), Some("hi, \"you\""));
        assert_eq!(m.created.to_rfc3339(), "2026-06-03T10:00:00.000Z");
    }

    #[test]
    fn columns_match_by_name_with_bom_and_extras() {
        let csv = "\u{feff}createdAt,extra,payload,payloadType,isEdited,pinned,displayName,meetingId,sessionId,participantId,id\n\
                   1780480800000,x,https://i/p.png,IMAGE_MESSAGE,FALSE,,Bo,mt,s,u,m\n";
        let LoadRow::Message(m) = &rows(csv)[0] else {
            panic!()
        };
        assert_eq!(m.kind, MessageKind::Image);
        assert_eq!(m.link.as_deref(), Some("https://i/p.png"));
        assert_eq!(m.display_name, "Bo");
    }

    #[test]
    fn missing_columns_are_listed() {
        let err = DumpReader::new("id,sessionId\n".as_bytes()).err().unwrap();
        let message = err.to_string();
        assert!(
            message.contains("participantId")
                && message.contains("createdAt")
                && !message.contains(" id,"),
            "{message}"
        );
        assert!(matches!(
            DumpReader::new("".as_bytes()).err().unwrap(),
            DumpError::Empty
        ));
    }

    #[test]
    fn a_rejected_row_keeps_its_exact_bytes() {
        let formula = "m2,u,s,m,Ann,maybe,false,TEXT_MESSAGE,\"=HYPERLINK(\"\"http://evil.example\"\",\"\"click\"\")\",1780480800000";
        let csv = format!(
            "{HEADER}m1,u,s,m,Ann,false,false,TEXT_MESSAGE,ok,1780480800000\r\n{formula}\r\n\"m3\",u,s,m,\"A\r\nB\",x,false,TEXT_MESSAGE,\"a,b\",1\n"
        );
        let rejected: Vec<RejectedRow> = rows(&csv)
            .into_iter()
            .filter_map(|r| match r {
                LoadRow::Rejected(r) => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(rejected.len(), 2);
        assert_eq!(String::from_utf8(rejected[0].raw.clone()).unwrap(), formula);
        assert_eq!(
            String::from_utf8(rejected[1].raw.clone()).unwrap(),
            "\"m3\",u,s,m,\"A\r\nB\",x,false,TEXT_MESSAGE,\"a,b\",1"
        );
        assert_eq!(rejected[1].line, 4);
    }

    #[test]
    fn the_byte_window_stays_small_over_many_rows() {
        let row = "m,u,s,m,Ann,false,false,TEXT_MESSAGE,hello there,1780480800000\n";
        let csv = format!("{HEADER}{}", row.repeat(50_000));
        let mut reader = DumpReader::new(csv.as_bytes()).unwrap();
        assert_eq!(reader.by_ref().count(), 50_000);
        let window = reader.lines.lock().unwrap().window.len();
        assert!(window < 2 * WINDOW_COMPACT_AT, "{window} bytes kept");
    }

    #[test]
    fn bad_rows_are_rejected_with_line_and_reason() {
        let csv = format!(
            "{HEADER}m1,u,s,mt,A,maybe,0,TEXT_MESSAGE,x,2026-06-03T10:00:00Z\n\
             m2,u,s,mt,A,0,0,TEXT_MESSAGE,x,not-a-time\n\
             m3,u,s\n\
             ,u,s,mt,A,0,0,TEXT_MESSAGE,x,2026-06-03T10:00:00Z\n"
        );
        let reasons: Vec<(u64, String)> = rows(&csv)
            .into_iter()
            .map(|r| match r {
                LoadRow::Rejected(r) => (r.line, r.reason),
                LoadRow::Message(m) => panic!("loaded {m:?}"),
            })
            .collect();
        assert_eq!(reasons[0], (2, "bad boolean in pinned: 'maybe'".into()));
        assert_eq!(
            reasons[1],
            (3, "bad time in createdAt: 'not-a-time'".into())
        );
        assert_eq!(reasons[2], (4, "expected 10 fields, found 3".into()));
        assert_eq!(reasons[3], (5, "empty id".into()));
    }

    #[test]
    fn line_numbers_are_exact_with_crlf_lf_and_multiline_fields() {
        let csv = format!(
            "{}\r\nm1,u,s,mt,A,x,0,TEXT_MESSAGE,x,2026-06-03T10:00:00Z\r\n\
             m2,u,s,mt,A,0,0,TEXT_MESSAGE,\"two\r\nlines\",bad\n\
             m3,u,s,mt,A,0,0,TEXT_MESSAGE,x,bad\r\n",
            HEADER.trim_end()
        );
        let lines: Vec<u64> = rows(&csv)
            .into_iter()
            .map(|r| match r {
                LoadRow::Rejected(r) => r.line,
                LoadRow::Message(m) => panic!("{m:?}"),
            })
            .collect();
        assert_eq!(lines, vec![2, 3, 5]);
    }

    #[test]
    fn invalid_utf8_is_rejected_not_fatal() {
        let mut csv = HEADER.as_bytes().to_vec();
        csv.extend_from_slice(b"m1,u,s,mt,A\xff,0,0,TEXT_MESSAGE,x,2026-06-03T10:00:00Z\nm2,u,s,mt,A,0,0,TEXT_MESSAGE,y,2026-06-03T10:00:00Z\n");
        let rows: Vec<LoadRow> = DumpReader::new(&csv[..]).unwrap().collect();
        assert!(
            matches!(&rows[0], LoadRow::Rejected(r) if r.reason == "invalid UTF-8 in column displayName" && r.raw.contains(&0xff))
        );
        assert!(matches!(&rows[1], LoadRow::Message(m) if m.id == "m2"));
    }
}

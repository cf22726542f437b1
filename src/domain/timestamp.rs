use chrono::{DateTime, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use std::fmt;

/// An instant in UTC with millisecond precision, as chatsink stores and serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TimestampError {
    #[error("'{0}' is not a timestamp (RFC 3339, 'YYYY-MM-DD HH:MM:SS[.ffffff]Z' or epoch seconds/milliseconds)")]
    Unparsable(String),
    #[error("'{0}' is outside the years 0000 to 9999 that RFC 3339 can write")]
    OutOfRange(String),
}

/// The first and last instants chatsink accepts: RFC 3339 writes four-digit years only, and
/// SQLite's date functions give NULL outside them. Parsing refuses anything else, so no stored
/// time can break a route.
pub const MIN_MILLIS: i64 = -62_167_219_200_000; // 0000-01-01T00:00:00.000Z
pub const MAX_MILLIS: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z

/// Epoch values at or above this are milliseconds, below it seconds (1e11 s is the year 5138).
const EPOCH_MS_THRESHOLD: i64 = 100_000_000_000;

/// Milliseconds since the epoch, now: the unit of every stored `*_ms` time.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis() + crate::failpoint::clock_skew_ms()
}

impl Timestamp {
    pub fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    pub fn now() -> Self {
        Self(Utc::now().timestamp_millis())
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    /// Parses every form RealtimeKit and Dyte send: RFC 3339
    /// (`2026-06-03T10:00:00.000Z`), Dyte's `2022-12-13 07:08:39.051621Z`, and epoch seconds or
    /// milliseconds. A zone-less date-time is taken as UTC. Instants outside
    /// [`MIN_MILLIS`]..=[`MAX_MILLIS`] are refused.
    pub fn parse(raw: &str) -> Result<Self, TimestampError> {
        let ms = Self::parse_unchecked(raw)?;
        if (MIN_MILLIS..=MAX_MILLIS).contains(&ms) {
            Ok(Self(ms))
        } else {
            Err(TimestampError::OutOfRange(raw.to_owned()))
        }
    }

    /// [`Timestamp::parse`], or a bare date `YYYY-MM-DD` as midnight UTC (for query filters:
    /// `since=2026-06-03`).
    pub fn parse_date_or_time(raw: &str) -> Result<Self, TimestampError> {
        match chrono::NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d") {
            Ok(day) if raw.trim().len() == 10 => Self::parse(
                &Utc.from_utc_datetime(&day.and_time(chrono::NaiveTime::MIN))
                    .timestamp_millis()
                    .to_string(),
            ),
            _ => Self::parse(raw),
        }
    }

    fn parse_unchecked(raw: &str) -> Result<i64, TimestampError> {
        let s = raw.trim();
        let err = || TimestampError::Unparsable(raw.to_owned());
        if s.is_empty() {
            return Err(err());
        }
        if s.bytes().all(|b| b.is_ascii_digit())
            || (s.starts_with('-') && s.len() > 1 && s[1..].bytes().all(|b| b.is_ascii_digit()))
        {
            let n: i64 = s.parse().map_err(|_| err())?;
            let ms = if n.abs() >= EPOCH_MS_THRESHOLD {
                n
            } else {
                n.checked_mul(1000).ok_or_else(err)?
            };
            return Ok(ms);
        }
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            return Ok(t.timestamp_millis());
        }
        // Dyte's form: a space instead of 'T', often microseconds, 'Z' or an offset.
        let with_t = s.replacen(' ', "T", 1);
        if let Ok(t) = DateTime::parse_from_rfc3339(&with_t) {
            return Ok(t.timestamp_millis());
        }
        let naive = with_t.trim_end_matches('Z');
        for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S"] {
            if let Ok(t) = NaiveDateTime::parse_from_str(naive, format) {
                return Ok(Utc.from_utc_datetime(&t).timestamp_millis());
            }
        }
        Err(err())
    }

    /// RFC 3339 in UTC with exactly three fractional digits: `2026-06-03T10:00:00.000Z`. A value
    /// outside the accepted range (stored by a version before the range was enforced) is written
    /// as the nearest end of it, so the output is always RFC 3339.
    pub fn to_rfc3339(self) -> String {
        let ms = self.0.clamp(MIN_MILLIS, MAX_MILLIS);
        // Not `format("…%.3fZ")`: that interprets the pattern per call, a tenth of the CPU of a
        // 100-row API page.
        Utc.timestamp_millis_opt(ms)
            .single()
            .expect("the accepted range is representable")
            .to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    /// The UTC day, `YYYY-MM-DD`, of a day number (days since 1970-01-01, floored).
    pub fn day_of(day: i64) -> String {
        Self(day.saturating_mul(86_400_000)).to_rfc3339()[..10].to_owned()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_documented_form_to_the_same_instant() {
        let expected = Timestamp::parse("2026-06-03T10:00:00.000Z").unwrap();
        for form in [
            "2026-06-03T10:00:00Z",
            "2026-06-03T12:00:00.000+02:00",
            "2026-06-03 10:00:00.000000Z",
            "2026-06-03 10:00:00",
            "1780480800",
            "1780480800000",
        ] {
            assert_eq!(Timestamp::parse(form), Ok(expected), "{form}");
        }
        assert_eq!(expected.to_rfc3339(), "2026-06-03T10:00:00.000Z");
    }

    #[test]
    fn keeps_milliseconds_and_truncates_microseconds() {
        let t = Timestamp::parse("2022-12-13 07:08:39.051621Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2022-12-13T07:08:39.051Z");
    }

    #[test]
    fn the_range_is_the_years_rfc_3339_can_write() {
        for (raw, written) in [
            ("0000-01-01T00:00:00Z", "0000-01-01T00:00:00.000Z"),
            ("9999-12-31T23:59:59.999Z", "9999-12-31T23:59:59.999Z"),
            ("253402300799999", "9999-12-31T23:59:59.999Z"),
            ("-62167219200000", "0000-01-01T00:00:00.000Z"),
        ] {
            assert_eq!(
                Timestamp::parse(raw).unwrap().to_rfc3339(),
                written,
                "{raw}"
            );
        }
        for raw in [
            "253402300800000",
            "-62167219200001",
            "99999999999999999",
            "+10000-01-01T00:00:00Z",
        ] {
            assert!(
                matches!(
                    Timestamp::parse(raw),
                    Err(TimestampError::OutOfRange(_)) | Err(TimestampError::Unparsable(_))
                ),
                "{raw}"
            );
        }
        assert_eq!(
            Timestamp::parse("253402300800000"),
            Err(TimestampError::OutOfRange("253402300800000".into()))
        );
        // Stored before the range was enforced: still written as RFC 3339.
        assert_eq!(
            Timestamp::from_millis(253_402_300_800_000).to_rfc3339(),
            "9999-12-31T23:59:59.999Z"
        );
        assert_eq!(Timestamp::day_of(0), "1970-01-01");
        assert_eq!(Timestamp::day_of(-1), "1969-12-31");
    }

    #[test]
    fn a_bare_date_is_midnight_utc_for_filters() {
        assert_eq!(
            Timestamp::parse_date_or_time("2026-05-28")
                .unwrap()
                .to_rfc3339(),
            "2026-05-28T00:00:00.000Z"
        );
        assert_eq!(
            Timestamp::parse_date_or_time("1780000000")
                .unwrap()
                .to_rfc3339(),
            "2026-05-28T20:26:40.000Z"
        );
        assert!(Timestamp::parse_date_or_time("2026-02-30").is_err());
        assert!(Timestamp::parse("2026-05-28").is_err(), "not in a dump");
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "yesterday", "2026-13-01T00:00:00Z", "12:00", "1e9"] {
            assert!(Timestamp::parse(bad).is_err(), "{bad}");
        }
    }
}

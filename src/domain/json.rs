//! JSON written by strangers (webhook bodies, file payloads in a dump, the RealtimeKit API's
//! answers), decoded the way RFC 8259 allows it to be written.
//!
//! RFC 8259's grammar accepts a `\uD83D` escape without its low half (JavaScript's
//! `JSON.stringify` writes one for a string cut in the middle of an emoji); serde_json refuses
//! it, because a Rust string cannot hold it. A refused webhook is a 400 that RealtimeKit never
//! retries, so its chat would be lost for one cosmetic character. Unpaired surrogate escapes
//! become U+FFFD instead; the raw bytes are kept as received wherever chatsink stores them.

use serde::de::DeserializeOwned;
use std::borrow::Cow;

/// `serde_json::from_slice`, with unpaired surrogate escapes decoded as U+FFFD. Well-formed input
/// is parsed once; only input serde_json refuses is scanned and parsed again.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> serde_json::Result<T> {
    match serde_json::from_slice(bytes) {
        Ok(value) => Ok(value),
        Err(e) => match replace_lone_surrogates(bytes) {
            Cow::Owned(fixed) => serde_json::from_slice(&fixed),
            Cow::Borrowed(_) => Err(e),
        },
    }
}

/// [`from_slice`] for text.
pub fn from_str<T: DeserializeOwned>(text: &str) -> serde_json::Result<T> {
    from_slice(text.as_bytes())
}

fn hex4(bytes: &[u8]) -> Option<u16> {
    let digits = std::str::from_utf8(bytes.get(..4)?).ok()?;
    u16::from_str_radix(digits, 16).ok()
}

/// Rewrites every `\uD800`-`\uDFFF` escape that is not a high half followed by a low half as
/// `\uFFFD`. Borrowed when there was nothing to rewrite.
fn replace_lone_surrogates(bytes: &[u8]) -> Cow<'_, [u8]> {
    let is_high = |u: u16| (0xD800..0xDC00).contains(&u);
    let is_low = |u: u16| (0xDC00..0xE000).contains(&u);
    let unit_at = |i: usize| match bytes.get(i..i + 2) {
        Some(b"\\u") => hex4(&bytes[i + 2..]),
        _ => None,
    };
    let mut out: Vec<u8> = Vec::new();
    // bytes[..copied] are in `out` already (or need no copy while nothing was rewritten).
    let mut copied = 0;
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        match (in_string, bytes[i]) {
            (false, b'"') => in_string = true,
            (false, _) => {}
            (true, b'"') => in_string = false,
            (true, b'\\') => match unit_at(i) {
                Some(unit) if is_high(unit) && unit_at(i + 6).is_some_and(is_low) => {
                    i += 12;
                    continue;
                }
                Some(unit) if is_high(unit) || is_low(unit) => {
                    out.extend_from_slice(&bytes[copied..i]);
                    out.extend_from_slice(b"\\uFFFD");
                    i += 6;
                    copied = i;
                    continue;
                }
                // Any other escape: skip its backslash and the character after it.
                _ => i += 1,
            },
            (true, _) => {}
        }
        i += 1;
    }
    if copied == 0 {
        return Cow::Borrowed(bytes);
    }
    out.extend_from_slice(&bytes[copied..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn lone_surrogates_become_the_replacement_character() {
        for (raw, expected) in [
            (r#"{"t":"Weekly \ud83d sync"}"#, "Weekly \u{FFFD} sync"),
            (r#"{"t":"\udc00"}"#, "\u{FFFD}"),
            (r#"{"t":"cut \uD83D"}"#, "cut \u{FFFD}"),
            (r#"{"t":"\ud83d\ud83d\ude00"}"#, "\u{FFFD}\u{1F600}"),
            (r#"{"t":"ok \ud83d\ude00"}"#, "ok \u{1F600}"),
            (r#"{"t":"\\ud83d"}"#, "\\ud83d"),
        ] {
            let v: Value = from_str(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(v["t"], expected, "{raw}");
        }
    }

    #[test]
    fn other_errors_stay_errors() {
        assert!(from_str::<Value>(r#"{"t":"\ud83d"#).is_err());
        assert!(from_str::<Value>(r#"{"t":"\uZZZZ"}"#).is_err());
        assert!(from_str::<Value>("nope").is_err());
    }
}

//! PostgreSQL's `text` cannot hold U+0000, which chat text, names and ids from a dump (or a
//! webhook's JSON) may contain, and which SQLite keeps. Strangers' text is written through
//! [`put`] and read back through [`get`]: U+0000 is stored as U+E000 '0' and U+E000 itself as
//! U+E000 U+E000, so every string comes back exactly as it went in (and text without either
//! character is stored unchanged). Raw SQL readers of such rare strings see the escaped form.

use std::borrow::Cow;

const ESCAPE: char = '\u{E000}';

pub fn put(text: &str) -> Cow<'_, str> {
    if !text.contains(['\0', ESCAPE]) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 4);
    for c in text.chars() {
        match c {
            '\0' => {
                out.push(ESCAPE);
                out.push('0');
            }
            ESCAPE => {
                out.push(ESCAPE);
                out.push(ESCAPE);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

pub fn put_opt(text: &Option<String>) -> Option<Cow<'_, str>> {
    text.as_deref().map(put)
}

pub fn get(text: String) -> String {
    if !text.contains(ESCAPE) {
        return text;
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == ESCAPE {
            match chars.next() {
                Some('0') => out.push('\0'),
                Some(other) => out.push(other),
                None => out.push(ESCAPE),
            }
        } else {
            out.push(c);
        }
    }
    out
}

pub fn get_opt(text: Option<String>) -> Option<String> {
    text.map(get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_string_comes_back_as_it_went_in_and_none_holds_a_nul() {
        for text in [
            "plain",
            "a\0b",
            "\0",
            "\u{E000}",
            "x\u{E000}0y\0\u{E000}\u{E000}",
            "",
        ] {
            let stored = put(text);
            assert!(!stored.contains('\0'), "{stored:?}");
            assert_eq!(get(stored.into_owned()), text);
        }
        assert!(matches!(put("plain"), Cow::Borrowed(_)));
    }
}

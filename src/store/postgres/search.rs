//! Full text on PostgreSQL with SQLite's rules. PostgreSQL's own parser keeps `report-123.pdf`
//! and `alice@example.com` as single tokens, so `pdf` would not find the file; chatsink instead
//! builds each message's `tsvector` itself with the rules of its FTS5 index (`unicode61
//! remove_diacritics 2`): a token is a run of letters and digits, case folded, with diacritics
//! removed from Latin letters; everything else separates tokens. A `q` compiles to a `tsquery`
//! over the same tokens, so both backends find the same rows.
//!
//! The three columns are weights (text A, file name B, display name C), so `text:` and friends
//! are weight filters; each column's positions start well past the last one's, so no phrase
//! runs from one column into the next.

use crate::domain::{Phrase, SearchColumn, TextQuery};
use unicode_normalization::char::decompose_canonical;

/// PostgreSQL's limits: a lexeme of at most 2,047 bytes, positions up to 16,383, and a
/// `tsvector` of at most 1 MB. Longer words are not indexed; text past the position limit is
/// indexed at the last position (as PostgreSQL itself does); indexing stops before 1 MB.
const MAX_LEXEME_BYTES: usize = 2047;
const MAX_POSITION: usize = 16_383;
const MAX_VECTOR_BYTES: usize = 900 * 1024;
/// Positions between one column's words and the next column's.
const COLUMN_GAP: usize = 100;

/// The words of `text` as chatsink's FTS5 index sees them.
pub fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        if is_token_char(c) {
            for folded in c.to_lowercase() {
                push_without_diacritics(&mut current, folded);
            }
        } else if !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// unicode61's token characters: letters, numbers and private-use characters.
fn is_token_char(c: char) -> bool {
    c.is_alphanumeric() || ('\u{E000}'..='\u{F8FF}').contains(&c)
}

/// A Latin letter loses its diacritics (its canonical decomposition without combining marks);
/// every other character stays as it is.
fn push_without_diacritics(out: &mut String, c: char) {
    let latin = matches!(c as u32, 0x00C0..=0x024F | 0x1E00..=0x1EFF);
    if !latin {
        out.push(c);
        return;
    }
    decompose_canonical(c, |part| {
        if !('\u{0300}'..='\u{036F}').contains(&part) {
            out.push(part);
        }
    });
}

/// A message's `tsvector`, as text for `::tsvector`.
pub fn document(text: Option<&str>, file_name: Option<&str>, display_name: &str) -> String {
    let mut out = String::new();
    let mut position = 1;
    for (value, weight) in [(text, 'A'), (file_name, 'B'), (Some(display_name), 'C')] {
        let Some(value) = value else { continue };
        for token in tokens(value) {
            if token.len() > MAX_LEXEME_BYTES {
                position += 1;
                continue;
            }
            if out.len() + token.len() + 16 > MAX_VECTOR_BYTES {
                return out;
            }
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&quoted(&token));
            out.push_str(&format!(":{}{weight}", position.min(MAX_POSITION)));
            position += 1;
        }
        position += COLUMN_GAP;
    }
    out
}

/// A lexeme quoted for `tsvector` and `tsquery` text.
fn quoted(token: &str) -> String {
    format!("'{}'", token.replace('\\', "\\\\").replace('\'', "''"))
}

/// `q` as a `tsquery`, or `None` when it can match nothing (a phrase with no words in it).
pub fn tsquery(query: &TextQuery) -> Option<String> {
    compile(query, None)
}

fn compile(query: &TextQuery, column: Option<SearchColumn>) -> Option<String> {
    match query {
        TextQuery::Phrase(p) => phrase(p, column),
        TextQuery::Near { phrases, distance } => {
            let distance = distance.unwrap_or(10) as usize;
            let compiled: Vec<String> = phrases
                .iter()
                .map(|p| phrase(p, column))
                .collect::<Option<_>>()?;
            // Every pair within `distance` words of each other, in either order.
            let mut pairs = Vec::new();
            for i in 0..compiled.len() {
                for j in i + 1..compiled.len() {
                    let mut either = Vec::new();
                    for d in 1..=distance + 1 {
                        either.push(format!("({} <{d}> {})", compiled[i], compiled[j]));
                        either.push(format!("({} <{d}> {})", compiled[j], compiled[i]));
                    }
                    pairs.push(format!("({})", either.join(" | ")));
                }
            }
            if pairs.is_empty() {
                return compiled.into_iter().next();
            }
            Some(format!("({})", pairs.join(" & ")))
        }
        TextQuery::Column(c, inner) => compile(inner, Some(*c)),
        TextQuery::And(parts) => {
            let parts: Vec<String> = parts
                .iter()
                .map(|p| compile(p, column))
                .collect::<Option<_>>()?;
            Some(format!("({})", parts.join(" & ")))
        }
        TextQuery::Or(parts) => {
            let parts: Vec<String> = parts.iter().filter_map(|p| compile(p, column)).collect();
            (!parts.is_empty()).then(|| format!("({})", parts.join(" | ")))
        }
        TextQuery::Not(a, b) => {
            let a = compile(a, column)?;
            Some(match compile(b, column) {
                Some(b) => format!("({a} & !{b})"),
                None => a,
            })
        }
    }
}

fn phrase(p: &Phrase, column: Option<SearchColumn>) -> Option<String> {
    let words = tokens(&p.text);
    if words.is_empty() {
        return None;
    }
    let weight = match column {
        Some(SearchColumn::Text) => "A",
        Some(SearchColumn::FileName) => "B",
        Some(SearchColumn::DisplayName) => "C",
        None => "",
    };
    let last = words.len() - 1;
    let parts: Vec<String> = words
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let star = if p.prefix && i == last { "*" } else { "" };
            if star.is_empty() && weight.is_empty() {
                quoted(w)
            } else {
                format!("{}:{star}{weight}", quoted(w))
            }
        })
        .collect();
    Some(if parts.len() == 1 {
        parts.into_iter().next().expect("one")
    } else {
        format!("({})", parts.join(" <-> "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_follow_fts5s_unicode61_rules() {
        assert_eq!(tokens("report-123.pdf"), ["report", "123", "pdf"]);
        assert_eq!(tokens("alice@example.com"), ["alice", "example", "com"]);
        assert_eq!(tokens("Crème BRÛLÉE naïve"), ["creme", "brulee", "naive"]);
        assert_eq!(tokens("日本語 テスト"), ["日本語", "テスト"]);
        assert_eq!(tokens("ship it 🚀 now!"), ["ship", "it", "now"]);
        assert_eq!(tokens("مرحبا بالعالم"), ["مرحبا", "بالعالم"]);
        assert!(tokens("--- ... !!!").is_empty());
    }

    #[test]
    fn documents_weigh_each_column_and_keep_quotes_literal() {
        assert_eq!(
            document(Some("it's ok"), Some("a.pdf"), "Zoë"),
            "'it':1A 's':2A 'ok':3A 'a':104B 'pdf':105B 'zoe':206C"
        );
    }

    #[test]
    fn queries_compile_to_tsquery_over_the_same_words() {
        let q = |s: &str| tsquery(&TextQuery::parse(s).unwrap());
        assert_eq!(q("pdf").as_deref(), Some("'pdf'"));
        assert_eq!(
            q("\"Crème brûlée\"").as_deref(),
            Some("('creme' <-> 'brulee')")
        );
        assert_eq!(q("rep*").as_deref(), Some("'rep':*"));
        assert_eq!(q("file_name:pdf").as_deref(), Some("'pdf':B"));
        assert_eq!(q("a NOT b").as_deref(), Some("('a' & !'b')"));
        assert_eq!(q("\"!!!\""), None);
        assert_eq!(q("x OR \"!!!\"").as_deref(), Some("('x')"));
        assert!(q("NEAR(a b, 1)").unwrap().contains("('a' <2> 'b')"));
    }
}

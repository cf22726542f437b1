//! The `q` full-text syntax, chatsink's own: parsed here at the API edge into a small typed
//! query that each store backend compiles for its engine (an FTS5 MATCH expression for SQLite).
//! A `q` that does not parse is refused with chatsink's words for where and why, never the
//! engine's.
//!
//! Syntax: words are ANDed; `"a phrase"`; `prefix*`; `AND`, `OR`, `NOT` (binary: `a NOT b`),
//! binding NOT tighter than AND tighter than OR; `NEAR(a b, N)`; column filters `text:`,
//! `file_name:`, `display_name:`; parentheses. Operators are upper case; lower-case `and` is a
//! word.
//!
//! Complexity is bounded where a parser can see it (the engine's read budget bounds the rest):
//! equal terms fold (`t* t* t*` is `t*`), and a query holds at most [`MAX_PHRASES`] phrases,
//! [`MAX_PREFIXES`] prefix terms and [`MAX_DEPTH`] levels of nesting.

use std::fmt;

/// Phrases (words and quoted phrases) a query may hold after equal terms fold.
pub const MAX_PHRASES: usize = 32;
/// Prefix terms (`word*`) a query may hold: each expands to every indexed word it starts.
pub const MAX_PREFIXES: usize = 4;
/// Levels of operators and column filters, counted on the parsed query (parentheses around a
/// single term add none).
pub const MAX_DEPTH: usize = 8;
/// Parentheses the parser follows before refusing, far above [`MAX_DEPTH`]: it bounds the
/// parser's recursion, whatever the folding would leave.
const MAX_PARENS: usize = 64;
/// The largest `N` of `NEAR(..., N)`.
pub const MAX_NEAR_DISTANCE: u32 = 1000;

/// A column of the full-text index a filter can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SearchColumn {
    Text,
    FileName,
    DisplayName,
}

impl SearchColumn {
    pub const ALL: [SearchColumn; 3] = [Self::Text, Self::FileName, Self::DisplayName];

    pub fn name(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::FileName => "file_name",
            Self::DisplayName => "display_name",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// A word or a quoted phrase, matched as consecutive tokens; `prefix` matches any token that
/// starts with the last one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Phrase {
    pub text: String,
    pub prefix: bool,
}

/// A parsed `q`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TextQuery {
    Phrase(Phrase),
    /// The phrases within `distance` tokens of each other (default 10, as FTS5).
    Near {
        phrases: Vec<Phrase>,
        distance: Option<u32>,
    },
    Column(SearchColumn, Box<TextQuery>),
    /// Two or more, all matching.
    And(Vec<TextQuery>),
    /// Two or more, any matching.
    Or(Vec<TextQuery>),
    /// The first matching and the second not.
    Not(Box<TextQuery>, Box<TextQuery>),
}

/// Why a `q` was refused: `at` is the 1-based character position where parsing stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at character {at}: {message}")]
pub struct SearchError {
    pub at: usize,
    pub message: String,
}

impl TextQuery {
    pub fn parse(input: &str) -> Result<Self, SearchError> {
        if let Some((at, c)) = input.chars().enumerate().find(|(_, c)| c.is_control()) {
            return Err(SearchError {
                at: at + 1,
                message: format!(
                    "control character U+{:04X} is not allowed in a search",
                    c as u32
                ),
            });
        }
        let tokens = tokenize(input)?;
        let mut parser = Parser {
            tokens,
            next: 0,
            depth: 0,
            end: input.chars().count() + 1,
        };
        let query = parser.or_expr()?;
        if let Some(token) = parser.peek() {
            return Err(parser.error_at(
                token.at,
                match token.kind {
                    TokenKind::Close => "a ')' closes nothing".to_owned(),
                    _ => format!("unexpected {}", token.kind.describe()),
                },
            ));
        }
        if query.depth() > MAX_DEPTH {
            return Err(SearchError {
                at: 1,
                message: format!("nested more than {MAX_DEPTH} levels deep"),
            });
        }
        let (phrases, prefixes) = query.count_terms();
        if phrases > MAX_PHRASES {
            return Err(SearchError {
                at: 1,
                message: format!("{phrases} terms; a search may hold at most {MAX_PHRASES}"),
            });
        }
        if prefixes > MAX_PREFIXES {
            return Err(SearchError {
                at: 1,
                message: format!(
                    "{prefixes} different prefix terms (word*); a search may hold at most {MAX_PREFIXES}"
                ),
            });
        }
        Ok(query)
    }

    /// Levels of the query: a phrase or NEAR is 1.
    fn depth(&self) -> usize {
        match self {
            Self::Phrase(_) | Self::Near { .. } => 1,
            Self::Column(_, inner) => 1 + inner.depth(),
            Self::And(parts) | Self::Or(parts) => {
                1 + parts.iter().map(Self::depth).max().unwrap_or(0)
            }
            Self::Not(a, b) => 1 + a.depth().max(b.depth()),
        }
    }

    /// (phrases, prefix phrases) in the query.
    fn count_terms(&self) -> (usize, usize) {
        let phrase = |p: &Phrase| (1, p.prefix as usize);
        match self {
            Self::Phrase(p) => phrase(p),
            Self::Near { phrases, .. } => phrases
                .iter()
                .map(phrase)
                .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1)),
            Self::Column(_, inner) => inner.count_terms(),
            Self::And(parts) | Self::Or(parts) => parts
                .iter()
                .map(Self::count_terms)
                .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1)),
            Self::Not(a, b) => {
                let (a, b) = (a.count_terms(), b.count_terms());
                (a.0 + b.0, a.1 + b.1)
            }
        }
    }

    /// Joins parts under one operator: nested parts of the same operator are flattened and
    /// equal parts kept once (first occurrence first), so `t* t* t*` is `t*`.
    fn joined(make: fn(Vec<TextQuery>) -> TextQuery, parts: Vec<TextQuery>) -> TextQuery {
        let mut flat: Vec<TextQuery> = Vec::with_capacity(parts.len());
        for part in parts {
            let nested = match (make(Vec::new()), part) {
                (Self::And(_), Self::And(inner)) | (Self::Or(_), Self::Or(inner)) => inner,
                (_, other) => vec![other],
            };
            for p in nested {
                if !flat.contains(&p) {
                    flat.push(p);
                }
            }
        }
        if flat.len() == 1 {
            flat.pop().expect("one part")
        } else {
            make(flat)
        }
    }
}

/// Prints the query in its own syntax, fully parenthesised: parsing the text gives the same
/// query back.
impl fmt::Display for TextQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |f: &mut fmt::Formatter<'_>, parts: &[TextQuery], op: &str| {
            f.write_str("(")?;
            for (i, part) in parts.iter().enumerate() {
                if i > 0 {
                    write!(f, " {op} ")?;
                }
                write!(f, "{part}")?;
            }
            f.write_str(")")
        };
        match self {
            Self::Phrase(p) => write!(f, "{p}"),
            Self::Near { phrases, distance } => {
                f.write_str("NEAR(")?;
                for (i, p) in phrases.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{p}")?;
                }
                if let Some(d) = distance {
                    write!(f, ", {d}")?;
                }
                f.write_str(")")
            }
            // A compound inner query prints its own parentheses.
            Self::Column(column, inner) => write!(f, "{}:{inner}", column.name()),
            Self::And(parts) => list(f, parts, "AND"),
            Self::Or(parts) => list(f, parts, "OR"),
            Self::Not(a, b) => write!(f, "({a} NOT {b})"),
        }
    }
}

impl fmt::Display for Phrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.text.replace('"', "\"\""))?;
        if self.prefix {
            f.write_str("*")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TokenKind {
    Word(String),
    Quoted(String),
    Star,
    Open,
    Close,
    Colon,
    Comma,
    And,
    Or,
    Not,
    Near,
}

impl TokenKind {
    fn describe(&self) -> String {
        match self {
            Self::Word(w) => format!("word '{w}'"),
            Self::Quoted(_) => "phrase".into(),
            Self::Star => "'*' (a prefix star follows a word directly)".into(),
            Self::Open => "'('".into(),
            Self::Close => "')'".into(),
            Self::Colon => "':'".into(),
            Self::Comma => "','".into(),
            Self::And => "AND".into(),
            Self::Or => "OR".into(),
            Self::Not => "NOT".into(),
            Self::Near => "NEAR".into(),
        }
    }
}

#[derive(Debug, Clone)]
struct Token {
    kind: TokenKind,
    /// 1-based character position.
    at: usize,
    /// Whether whitespace separates it from the token before.
    spaced: bool,
}

/// A character of an unquoted word: letters and digits of any script, `_`, and any other
/// non-ASCII character but spaces (the tokenizer splits those words further).
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || (!c.is_ascii() && !c.is_whitespace())
}

fn tokenize(input: &str) -> Result<Vec<Token>, SearchError> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let mut spaced = true;
    while i < chars.len() {
        let c = chars[i];
        let at = i + 1;
        if c.is_whitespace() {
            spaced = true;
            i += 1;
            continue;
        }
        let kind = match c {
            '(' => TokenKind::Open,
            ')' => TokenKind::Close,
            ':' => TokenKind::Colon,
            ',' => TokenKind::Comma,
            '*' => TokenKind::Star,
            '"' => {
                let mut text = String::new();
                let mut j = i + 1;
                loop {
                    match chars.get(j) {
                        None => {
                            return Err(SearchError {
                                at,
                                message: "this '\"' opens a phrase that is never closed".into(),
                            })
                        }
                        Some('"') if chars.get(j + 1) == Some(&'"') => {
                            text.push('"');
                            j += 2;
                        }
                        Some('"') => break,
                        Some(&other) => {
                            text.push(other);
                            j += 1;
                        }
                    }
                }
                i = j;
                TokenKind::Quoted(text)
            }
            c if is_word_char(c) => {
                let start = i;
                while i + 1 < chars.len() && is_word_char(chars[i + 1]) {
                    i += 1;
                }
                let word: String = chars[start..=i].iter().collect();
                match word.as_str() {
                    "AND" => TokenKind::And,
                    "OR" => TokenKind::Or,
                    "NOT" => TokenKind::Not,
                    "NEAR" if chars.get(i + 1) == Some(&'(') => TokenKind::Near,
                    _ => TokenKind::Word(word),
                }
            }
            other => {
                return Err(SearchError {
                    at,
                    message: format!(
                        "'{other}' is not part of the search syntax; put text with punctuation in double quotes"
                    ),
                })
            }
        };
        tokens.push(Token { kind, at, spaced });
        spaced = false;
        i += 1;
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    next: usize,
    depth: usize,
    /// The position just past the input, for "ended early" errors.
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.next)
    }

    fn take(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.next).cloned();
        self.next += token.is_some() as usize;
        token
    }

    fn error_at(&self, at: usize, message: impl Into<String>) -> SearchError {
        SearchError {
            at,
            message: message.into(),
        }
    }

    fn here(&self) -> usize {
        self.peek().map_or(self.end, |t| t.at)
    }

    fn expected(&self, what: &str) -> SearchError {
        match self.peek() {
            Some(t) => self.error_at(
                t.at,
                format!("expected {what}, found {}", t.kind.describe()),
            ),
            None => self.error_at(
                self.end,
                format!("the search ends where {what} was expected"),
            ),
        }
    }

    fn nested<T>(
        &mut self,
        at: usize,
        inner: impl FnOnce(&mut Self) -> Result<T, SearchError>,
    ) -> Result<T, SearchError> {
        self.depth += 1;
        if self.depth > MAX_PARENS {
            return Err(self.error_at(at, format!("nested more than {MAX_PARENS} levels deep")));
        }
        let result = inner(self);
        self.depth -= 1;
        result
    }

    fn or_expr(&mut self) -> Result<TextQuery, SearchError> {
        let mut parts = vec![self.and_expr()?];
        while matches!(self.peek(), Some(t) if t.kind == TokenKind::Or) {
            self.take();
            parts.push(self.and_expr()?);
        }
        Ok(TextQuery::joined(TextQuery::Or, parts))
    }

    fn and_expr(&mut self) -> Result<TextQuery, SearchError> {
        let mut parts = vec![self.not_expr()?];
        loop {
            match self.peek().map(|t| &t.kind) {
                Some(TokenKind::And) => {
                    self.take();
                    parts.push(self.not_expr()?);
                }
                // Juxtaposition is AND.
                Some(
                    TokenKind::Word(_) | TokenKind::Quoted(_) | TokenKind::Open | TokenKind::Near,
                ) => parts.push(self.not_expr()?),
                _ => break,
            }
        }
        Ok(TextQuery::joined(TextQuery::And, parts))
    }

    fn not_expr(&mut self) -> Result<TextQuery, SearchError> {
        let mut left = self.primary()?;
        while matches!(self.peek(), Some(t) if t.kind == TokenKind::Not) {
            self.take();
            let right = self.primary()?;
            left = TextQuery::Not(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn primary(&mut self) -> Result<TextQuery, SearchError> {
        let Some(token) = self.peek().cloned() else {
            return Err(self.expected("a word or phrase"));
        };
        match token.kind {
            TokenKind::Open => {
                self.take();
                let inner = self.nested(token.at, Self::or_expr)?;
                match self.take() {
                    Some(Token {
                        kind: TokenKind::Close,
                        ..
                    }) => Ok(inner),
                    _ => Err(self.error_at(token.at, "this '(' is never closed")),
                }
            }
            TokenKind::Near => {
                self.take();
                self.take(); // '(' (the tokenizer made NEAR only before one)
                let mut phrases = Vec::new();
                let mut distance = None;
                loop {
                    match self.peek().map(|t| t.kind.clone()) {
                        Some(TokenKind::Word(_) | TokenKind::Quoted(_)) => {
                            let p = self.phrase()?;
                            if !phrases.contains(&p) {
                                phrases.push(p);
                            }
                        }
                        Some(TokenKind::Comma) if !phrases.is_empty() => {
                            self.take();
                            let at = self.here();
                            match self.take().map(|t| t.kind) {
                                Some(TokenKind::Word(n)) => match n.parse::<u32>() {
                                    Ok(n) if n <= MAX_NEAR_DISTANCE => distance = Some(n),
                                    _ => {
                                        return Err(self.error_at(
                                            at,
                                            format!("NEAR's distance must be a whole number from 0 to {MAX_NEAR_DISTANCE}"),
                                        ))
                                    }
                                },
                                _ => return Err(self.error_at(at, "expected NEAR's distance after ','")),
                            }
                            if !matches!(self.peek(), Some(t) if t.kind == TokenKind::Close) {
                                return Err(self.expected("')' to close NEAR"));
                            }
                        }
                        Some(TokenKind::Close) if !phrases.is_empty() => {
                            self.take();
                            break;
                        }
                        _ => return Err(self.expected("a word or phrase inside NEAR(...)")),
                    }
                }
                if phrases.len() == 1 && distance.is_none() {
                    return Ok(TextQuery::Phrase(phrases.pop().expect("one")));
                }
                Ok(TextQuery::Near { phrases, distance })
            }
            TokenKind::Word(ref word) if matches!(self.tokens.get(self.next + 1), Some(t) if t.kind == TokenKind::Colon) =>
            {
                let Some(column) = SearchColumn::from_name(word) else {
                    return Err(self.error_at(
                        token.at,
                        format!("'{word}' is not a column; use text:, file_name: or display_name:"),
                    ));
                };
                self.take();
                self.take();
                let inner = self.nested(token.at, Self::primary)?;
                Ok(TextQuery::Column(column, Box::new(inner)))
            }
            TokenKind::Word(_) | TokenKind::Quoted(_) => Ok(TextQuery::Phrase(self.phrase()?)),
            _ => Err(self.expected("a word or phrase")),
        }
    }

    fn phrase(&mut self) -> Result<Phrase, SearchError> {
        let token = self.take().expect("called on a word or phrase");
        let text = match token.kind {
            TokenKind::Word(w) => w,
            TokenKind::Quoted(q) if q.trim().is_empty() => {
                return Err(self.error_at(token.at, "an empty phrase matches nothing"))
            }
            TokenKind::Quoted(q) => q,
            _ => unreachable!("phrase() is called on words and phrases only"),
        };
        let prefix = matches!(self.peek(), Some(t) if t.kind == TokenKind::Star && !t.spaced);
        if prefix {
            self.take();
        }
        Ok(Phrase { text, prefix })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn word(w: &str) -> TextQuery {
        TextQuery::Phrase(Phrase {
            text: w.into(),
            prefix: false,
        })
    }

    #[test]
    fn the_documented_forms_parse() {
        assert_eq!(TextQuery::parse("budget").unwrap(), word("budget"));
        assert_eq!(
            TextQuery::parse("a b").unwrap(),
            TextQuery::And(vec![word("a"), word("b")])
        );
        assert_eq!(
            TextQuery::parse("a AND b OR c").unwrap(),
            TextQuery::Or(vec![TextQuery::And(vec![word("a"), word("b")]), word("c")])
        );
        assert_eq!(
            TextQuery::parse("a NOT b c").unwrap(),
            TextQuery::And(vec![
                TextQuery::Not(Box::new(word("a")), Box::new(word("b"))),
                word("c")
            ])
        );
        assert_eq!(
            TextQuery::parse("\"q3 \"\"plan\"\"\"").unwrap(),
            word("q3 \"plan\"")
        );
        assert_eq!(
            TextQuery::parse("rep*").unwrap(),
            TextQuery::Phrase(Phrase {
                text: "rep".into(),
                prefix: true
            })
        );
        assert_eq!(
            TextQuery::parse("NEAR(a b, 5)").unwrap(),
            TextQuery::Near {
                phrases: vec![
                    Phrase {
                        text: "a".into(),
                        prefix: false
                    },
                    Phrase {
                        text: "b".into(),
                        prefix: false
                    }
                ],
                distance: Some(5)
            }
        );
        assert_eq!(
            TextQuery::parse("file_name:report").unwrap(),
            TextQuery::Column(SearchColumn::FileName, Box::new(word("report")))
        );
        assert_eq!(
            TextQuery::parse("display_name:(ann OR bob)").unwrap(),
            TextQuery::Column(
                SearchColumn::DisplayName,
                Box::new(TextQuery::Or(vec![word("ann"), word("bob")]))
            )
        );
        // Lower-case operators are words; NEAR without '(' is a word.
        assert_eq!(
            TextQuery::parse("and near").unwrap(),
            TextQuery::And(vec![word("and"), word("near")])
        );
        assert_eq!(
            TextQuery::parse("café 会議").unwrap().to_string(),
            "(\"café\" AND \"会議\")"
        );
    }

    #[test]
    fn equal_terms_fold() {
        let many = vec!["t*"; 60].join(" ");
        assert_eq!(
            TextQuery::parse(&many).unwrap(),
            TextQuery::parse("t*").unwrap()
        );
        assert_eq!(
            TextQuery::parse("a OR (a OR b) OR a").unwrap(),
            TextQuery::Or(vec![word("a"), word("b")])
        );
    }

    #[test]
    fn complexity_is_bounded() {
        let terms: Vec<String> = (0..=MAX_PHRASES).map(|i| format!("w{i}")).collect();
        assert!(TextQuery::parse(&terms.join(" "))
            .unwrap_err()
            .message
            .contains("at most 32"));
        assert!(TextQuery::parse("a* b* c* d* e*")
            .unwrap_err()
            .message
            .contains("prefix"));
        // Each level alternates OR and AND, so none folds away: `a OR (b (c OR (d ...)))`.
        let nest = |levels: usize| {
            let mut q = "z".to_owned();
            for i in 0..levels - 1 {
                let op = if i % 2 == 0 { " OR " } else { " " };
                q = format!("w{i}{op}({q})");
            }
            q
        };
        assert_eq!(
            TextQuery::parse(&nest(MAX_DEPTH)).unwrap().depth(),
            MAX_DEPTH
        );
        assert!(TextQuery::parse(&nest(MAX_DEPTH + 1))
            .unwrap_err()
            .message
            .contains("nested"));
        // Redundant parentheses fold; the parser still bounds its recursion.
        let wrapped = format!(
            "{}a{}",
            "(".repeat(MAX_DEPTH * 2),
            ")".repeat(MAX_DEPTH * 2)
        );
        assert_eq!(TextQuery::parse(&wrapped).unwrap(), word("a"));
        let endless = format!("{}a", "(".repeat(500));
        assert!(TextQuery::parse(&endless)
            .unwrap_err()
            .message
            .contains("nested"));
    }

    #[test]
    fn errors_say_where_and_why() {
        let cases: &[(&str, usize, &str)] = &[
            ("\"unterminated", 1, "never closed"),
            ("AND", 1, "expected a word"),
            ("a AND", 6, "ends where"),
            ("nosuchcolumn:word", 1, "not a column"),
            ("(", 2, "ends where"),
            ("(a", 1, "never closed"),
            ("a)", 2, "closes nothing"),
            ("a - b", 3, "'-' is not part"),
            ("roger\0zzzz", 6, "U+0000"),
            ("\"\"", 1, "empty phrase"),
            ("NEAR(a b, x)", 11, "distance"),
            ("*", 1, "expected a word"),
            ("NOT a", 1, "expected a word"),
        ];
        for (q, at, words) in cases {
            let e = TextQuery::parse(q).unwrap_err();
            assert_eq!(e.at, *at, "{q}: {e}");
            assert!(e.message.contains(words), "{q}: {e}");
        }
    }

    proptest! {
        #[test]
        fn any_input_parses_or_is_refused_without_panic(input in "\\PC{0,80}") {
            let _ = TextQuery::parse(&input);
        }

        #[test]
        fn syntax_shaped_input_round_trips(
            parts in proptest::collection::vec(
                prop_oneof![
                    "[a-z]{1,6}\\*?", "\"[a-z ]{1,10}\"", Just("AND".to_owned()),
                    Just("OR".to_owned()), Just("NOT".to_owned()), Just("(".to_owned()),
                    Just(")".to_owned()), Just("text:".to_owned()), Just("NEAR(a b, 3)".to_owned()),
                    Just("é".to_owned()),
                ],
                1..14,
            )
        ) {
            let input = parts.join(" ");
            if let Ok(query) = TextQuery::parse(&input) {
                let printed = query.to_string();
                prop_assert_eq!(TextQuery::parse(&printed), Ok(query), "{} -> {}", input, printed);
            }
        }
    }
}

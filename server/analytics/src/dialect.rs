//! The Kinesis Data Analytics dialect of a pump's `SELECT STREAM`, rewritten token by token into
//! SQL that DataFusion plans. What changes:
//! - `SELECT STREAM` loses `STREAM` (every query here is continuous);
//! - unquoted identifiers are upper-cased and quoted (the dialect folds them to upper case;
//!   DataFusion would fold them to lower case);
//! - `STEP(ts BY INTERVAL 'n' unit)` becomes `date_bin(...)` and `FLOOR(ts TO unit)` becomes
//!   `date_trunc('unit', ts)`; either of them over `ROWTIME` in the GROUP BY makes the query a
//!   tumbling window;
//! - a window spec without ORDER BY is ordered by ROWTIME, as the dialect's windows are;
//! - `*` lists the source stream's columns (ROWTIME and our hidden columns stay hidden).
//!
//! Each emitted token remembers where it was in the application code, so a parse error in the
//! rewritten SQL is reported at the code's line and column.

use std::collections::BTreeSet;

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

use crate::error::{AnalyticsError, Result};

/// The implicit arrival-time column of every in-application stream.
pub const ROWTIME: &str = "ROWTIME";
/// Hidden column: the row's ROWTIME carried through a query that does not aggregate.
pub const HIDDEN_ROWTIME: &str = "__FRAMELOG_ROWTIME";
/// Hidden column of every in-application stream: true for rows of the current batch, false for
/// history kept for sliding windows.
pub const HIDDEN_NEW: &str = "__FRAMELOG_NEW";

/// Words left as they are when not followed by `(`: SQL's structure, literals' prefixes and
/// type names. Every other unquoted word is an identifier.
const KEYWORDS: &[&str] = &[
    "ALL",
    "AND",
    "ANY",
    "AS",
    "ASC",
    "BETWEEN",
    "BIGINT",
    "BOOLEAN",
    "BOTH",
    "BY",
    "CASE",
    "CAST",
    "CHAR",
    "CHARACTER",
    "CROSS",
    "CURRENT",
    "CURRENT_DATE",
    "CURRENT_TIMESTAMP",
    "DATE",
    "DAY",
    "DECIMAL",
    "DESC",
    "DISTINCT",
    "DOUBLE",
    "ELSE",
    "END",
    "ESCAPE",
    "EXISTS",
    "FALSE",
    "FILTER",
    "FIRST",
    "FLOAT",
    "FOLLOWING",
    "FOR",
    "FROM",
    "FULL",
    "GROUP",
    "HAVING",
    "HOUR",
    "ILIKE",
    "IN",
    "INNER",
    "INT",
    "INTEGER",
    "INTERVAL",
    "IS",
    "JOIN",
    "LAST",
    "LEADING",
    "LEFT",
    "LIKE",
    "LIMIT",
    "MINUTE",
    "MONTH",
    "NOT",
    "NULL",
    "NULLS",
    "NUMERIC",
    "ON",
    "OR",
    "ORDER",
    "OUTER",
    "OVER",
    "PARTITION",
    "PRECEDING",
    "PRECISION",
    "RANGE",
    "REAL",
    "RIGHT",
    "ROW",
    "ROWS",
    "SECOND",
    "SELECT",
    "SIMILAR",
    "SMALLINT",
    "SOME",
    "THEN",
    "TIME",
    "TIMESTAMP",
    "TINYINT",
    "TO",
    "TRAILING",
    "TRUE",
    "UNBOUNDED",
    "UNION",
    "USING",
    "VARCHAR",
    "WHEN",
    "WHERE",
    "WINDOW",
    "YEAR",
    "ZONE",
];

pub(crate) fn is_keyword(word: &str) -> bool {
    KEYWORDS.binary_search(&word.to_ascii_uppercase().as_str()).is_ok()
}

/// A pump's query, rewritten.
#[derive(Debug, Clone, PartialEq)]
pub struct Translation {
    pub sql: String,
    /// Where each emitted token starts in `sql`, and where it was in the code.
    marks: Vec<(Location, Location)>,
    /// The query has a GROUP BY at its own level.
    pub grouped: bool,
    /// Set when the GROUP BY has `STEP` or `FLOOR` over ROWTIME: the window's length.
    pub tumbling_ms: Option<u64>,
    /// Set when the query has OVER windows: how much history each batch needs.
    pub sliding: Option<History>,
    /// The columns its `ROWS n PRECEDING` windows partition by, all of them together (none
    /// without PARTITION BY); `None` when one partitions by an expression.
    pub rows_partition: Option<Vec<String>>,
    /// The in-application streams (and reference tables) the query reads, in upper case.
    pub sources: Vec<String>,
}

/// History a sliding window needs before each batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct History {
    /// The longest `RANGE INTERVAL ... PRECEDING`.
    pub range_ms: u64,
    /// The largest `ROWS n PRECEDING`.
    pub rows: u64,
}

impl Translation {
    /// The code's line and column for a line and column of `sql`.
    pub fn original(&self, line: u64, column: u64) -> Location {
        let at = Location::new(line, column);
        let mark = self.marks.iter().rev().find(|(out, _)| (out.line, out.column) <= (at.line, at.column));
        mark.map_or(at, |(_, original)| *original)
    }

    /// Where the code first names `identifier` (upper case), for errors that name a column.
    pub fn find_identifier(&self, tokens: &[TokenWithSpan], identifier: &str) -> Option<Location> {
        tokens.iter().find_map(|t| match &t.token {
            Token::Word(w) if normalised(w) == identifier => Some(t.span.start),
            _ => None,
        })
    }
}

/// Tokens of the application code, with their places.
pub fn tokenize(code: &str) -> Result<Vec<TokenWithSpan>> {
    Tokenizer::new(&GenericDialect {}, code)
        .with_unescape(false)
        .tokenize_with_location()
        .map_err(|e| AnalyticsError::code(e.location.line, e.location.column, e.message))
}

/// An identifier as the dialect sees it: quoted ones as written, others in upper case.
pub fn normalised(word: &datafusion::sql::sqlparser::tokenizer::Word) -> String {
    match word.quote_style {
        Some(_) => word.value.clone(),
        None => word.value.to_ascii_uppercase(),
    }
}

pub(crate) fn word_is(token: &Token, text: &str) -> bool {
    matches!(token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(text))
}

pub(crate) fn is_blank(token: &Token) -> bool {
    matches!(token, Token::Whitespace(_))
}

/// Rewrites the tokens of one `SELECT STREAM ...`; `columns_of` names a source stream's
/// visible columns (for `*`).
pub fn translate(tokens: &[TokenWithSpan], columns_of: &dyn Fn(&str) -> Option<Vec<String>>) -> Result<Translation> {
    let shape = Shape::of(tokens);
    let mut writer = Writer::default();
    let mut state =
        Walk { shape: &shape, columns_of, tumbling_ms: None, history: None, rows_partition: Some(BTreeSet::new()) };
    state.range(tokens, 0, tokens.len(), &mut writer, 0)?;
    Ok(Translation {
        sql: writer.out,
        marks: writer.marks,
        tumbling_ms: state.tumbling_ms,
        grouped: shape.grouped,
        sliding: if shape.windowed { Some(state.history.unwrap_or(History { range_ms: 0, rows: 0 })) } else { None },
        rows_partition: state.rows_partition.map(|columns| columns.into_iter().collect()),
        sources: shape.sources,
    })
}

/// What a first look at the top level of the query finds.
#[derive(Debug, Default)]
struct Shape {
    grouped: bool,
    windowed: bool,
    sources: Vec<String>,
    /// How the first source is named in the query (its alias, or its name).
    first_qualifier: Option<String>,
}

impl Shape {
    fn of(tokens: &[TokenWithSpan]) -> Shape {
        let mut shape = Shape::default();
        let significant: Vec<&Token> = tokens.iter().map(|t| &t.token).filter(|t| !is_blank(t)).collect();
        let mut depth = 0i32;
        for (i, token) in significant.iter().enumerate() {
            match token {
                Token::LParen => depth += 1,
                Token::RParen => depth -= 1,
                _ if word_is(token, "OVER") || (depth == 0 && word_is(token, "WINDOW")) => shape.windowed = true,
                _ if depth == 0 && word_is(token, "GROUP") => shape.grouped = true,
                _ if word_is(token, "FROM") || word_is(token, "JOIN") => {
                    if let Some(Token::Word(name)) = significant.get(i + 1) {
                        shape.sources.push(normalised(name));
                        if shape.first_qualifier.is_none() {
                            shape.first_qualifier =
                                Some(alias_after(&significant[i + 2..]).unwrap_or(normalised(name)));
                        }
                    }
                }
                _ => {}
            }
        }
        shape
    }
}

/// The alias after a table name: `AS x`, or a bare word that is not a keyword.
fn alias_after(rest: &[&Token]) -> Option<String> {
    let rest = if rest.first().is_some_and(|t| word_is(t, "AS")) { &rest[1..] } else { rest };
    match rest.first() {
        Some(Token::Word(w)) if w.quote_style.is_some() || !is_keyword(&w.value) => Some(normalised(w)),
        _ => None,
    }
}

#[derive(Debug, Default)]
struct Writer {
    out: String,
    line: u64,
    column: u64,
    marks: Vec<(Location, Location)>,
}

impl Writer {
    fn emit(&mut self, text: &str, from: Location) {
        if self.line == 0 {
            (self.line, self.column) = (1, 1);
        }
        self.marks.push((Location::new(self.line, self.column), from));
        for c in text.chars() {
            if c == '\n' {
                (self.line, self.column) = (self.line + 1, 1);
            } else {
                self.column += 1;
            }
        }
        self.out.push_str(text);
    }
}

struct Walk<'a> {
    shape: &'a Shape,
    columns_of: &'a dyn Fn(&str) -> Option<Vec<String>>,
    tumbling_ms: Option<u64>,
    history: Option<History>,
    rows_partition: Option<BTreeSet<String>>,
}

impl Walk<'_> {
    /// Emits tokens `[from, to)`; `depth` is the parenthesis depth at `from` (0: the query's own level).
    fn range(&mut self, tokens: &[TokenWithSpan], from: usize, to: usize, w: &mut Writer, depth: i32) -> Result<()> {
        let mut depth = depth;
        let mut i = from;
        let mut in_group_by = false;
        let mut previous: Option<&Token> = None;
        while i < to {
            let TokenWithSpan { token, span } = &tokens[i];
            let next = next_significant(tokens, i + 1, to);
            match token {
                Token::EOF => {}
                Token::LParen => {
                    depth += 1;
                    w.emit("(", span.start);
                }
                Token::RParen => {
                    depth -= 1;
                    w.emit(")", span.start);
                }
                Token::Word(word) if word.quote_style.is_none() => {
                    let upper = word.value.to_ascii_uppercase();
                    let call = next.is_some_and(|n| matches!(tokens[n].token, Token::LParen));
                    if depth == 0 && upper == "GROUP" {
                        in_group_by = true;
                    } else if depth == 0 && ["HAVING", "WINDOW", "ORDER", "LIMIT", "UNION"].contains(&upper.as_str()) {
                        in_group_by = false;
                    }
                    if upper == "STREAM" && previous.is_some_and(|p| word_is(p, "SELECT")) {
                        // `SELECT STREAM`: every query here is continuous.
                    } else if depth == 0 && upper == "FROM" && self.needs_hidden_rowtime() {
                        let qualifier = self.shape.first_qualifier.clone().unwrap_or_default();
                        w.emit(&format!(", \"{qualifier}\".\"{ROWTIME}\" AS \"{HIDDEN_ROWTIME}\""), span.start);
                        if self.shape.windowed {
                            w.emit(&format!(", \"{qualifier}\".\"{HIDDEN_NEW}\" AS \"{HIDDEN_NEW}\""), span.start);
                        }
                        w.emit(" FROM", span.start);
                    } else if call && (upper == "STEP" || upper == "FLOOR") {
                        let Some(open) = next else { return Err(unclosed(span.start)) };
                        let close = matching(tokens, open, to).ok_or_else(|| unclosed(span.start))?;
                        if !self.time_call(tokens, &upper, open, close, w, in_group_by && depth == 0)? {
                            w.emit(&word.value, span.start);
                            self.range(tokens, open, close + 1, w, depth)?;
                        }
                        i = close + 1;
                        previous = Some(&tokens[close].token);
                        continue;
                    } else if call && upper == "OVER" || (call && upper == "AS" && self.shape.windowed) {
                        w.emit(&word.value, span.start);
                        let Some(open) = next else { return Err(unclosed(span.start)) };
                        let close = matching(tokens, open, to).ok_or_else(|| unclosed(span.start))?;
                        self.window_spec(tokens, open, close, w, depth)?;
                        i = close + 1;
                        previous = Some(&tokens[close].token);
                        continue;
                    } else if call || is_keyword(&upper) {
                        w.emit(&word.value, span.start);
                    } else {
                        w.emit(&format!("\"{}\"", upper.replace('"', "\"\"")), span.start);
                    }
                }
                Token::Mul if depth == 0 && previous.is_some_and(starts_item) => self.star(w, span.start)?,
                other => w.emit(&other.to_string(), span.start),
            }
            if !is_blank(token) {
                previous = Some(token);
            }
            i += 1;
        }
        Ok(())
    }

    /// A query that neither aggregates nor windows by GROUP BY carries each row's ROWTIME.
    fn needs_hidden_rowtime(&self) -> bool {
        !self.shape.grouped
    }

    /// `*` in the select list: the first source's visible columns.
    fn star(&self, w: &mut Writer, at: Location) -> Result<()> {
        let source = self.shape.sources.first().cloned().unwrap_or_default();
        let columns = (self.columns_of)(&source)
            .ok_or_else(|| AnalyticsError::code(at.line, at.column, format!("Unknown stream {source} for *.")))?;
        let listed: Vec<String> = columns.iter().map(|c| format!("\"{c}\"")).collect();
        w.emit(&listed.join(", "), at);
        Ok(())
    }

    /// `STEP(a BY b)` and `FLOOR(a TO unit)`; false when the call is not of that form (a
    /// numeric FLOOR), which the caller emits as it is.
    fn time_call(
        &mut self,
        tokens: &[TokenWithSpan],
        name: &str,
        open: usize,
        close: usize,
        w: &mut Writer,
        in_group_by: bool,
    ) -> Result<bool> {
        let separator = if name == "STEP" { "BY" } else { "TO" };
        let Some(split) = top_level_word(tokens, open + 1, close, separator) else {
            return if name == "STEP" { Err(bad_step(tokens[open].span.start)) } else { Ok(false) };
        };
        let at = tokens[open].span.start;
        let over_rowtime = last_word(tokens, open + 1, split).is_some_and(|w| w == ROWTIME);
        if name == "STEP" {
            let length_ms = interval_ms(tokens, split + 1, close).ok_or_else(|| bad_step(at))?;
            w.emit("date_bin(", at);
            self.range(tokens, split + 1, close, w, 1)?;
            w.emit(", ", at);
            self.range(tokens, open + 1, split, w, 1)?;
            w.emit(", TIMESTAMP '1970-01-01 00:00:00')", at);
            if in_group_by && over_rowtime {
                self.tumbling_ms = Some(length_ms);
            }
        } else {
            let unit = last_word(tokens, split + 1, close).unwrap_or_default();
            let length_ms = unit_ms(&unit).ok_or_else(|| {
                AnalyticsError::code(at.line, at.column, format!("FLOOR cannot round a time to {unit}."))
            })?;
            w.emit(&format!("date_trunc('{}', ", unit.to_ascii_lowercase()), at);
            self.range(tokens, open + 1, split, w, 1)?;
            w.emit(")", tokens[close].span.start);
            if in_group_by && over_rowtime {
                self.tumbling_ms = Some(length_ms);
            }
        }
        Ok(true)
    }

    /// A window spec `( ... )`: ordered by ROWTIME unless it says otherwise; its frame noted
    /// for the history each batch needs.
    fn window_spec(
        &mut self,
        tokens: &[TokenWithSpan],
        open: usize,
        close: usize,
        w: &mut Writer,
        depth: i32,
    ) -> Result<()> {
        let frame = top_level_word(tokens, open + 1, close, "RANGE")
            .or_else(|| top_level_word(tokens, open + 1, close, "ROWS"));
        let ordered = top_level_word(tokens, open + 1, close, "ORDER").is_some();
        let mut history = self.history.unwrap_or(History { range_ms: 0, rows: 0 });
        if let Some(frame) = frame {
            if word_is(&tokens[frame].token, "RANGE") {
                history.range_ms = history.range_ms.max(interval_ms(tokens, frame + 1, close).unwrap_or(0));
            } else {
                let rows = next_significant(tokens, frame + 1, close).and_then(|n| match &tokens[n].token {
                    Token::Number(n, _) => n.parse::<u64>().ok(),
                    _ => None,
                });
                history.rows = history.rows.max(rows.unwrap_or(0));
                let end = top_level_word(tokens, open + 1, frame, "ORDER").unwrap_or(frame);
                let columns = partition_columns(tokens, open + 1, end);
                self.rows_partition = self.rows_partition.take().zip(columns).map(|(all, more)| &all | &more);
            }
        }
        self.history = Some(history);
        match (frame, ordered) {
            (Some(frame), false) => {
                self.range(tokens, open, frame, w, depth)?;
                w.emit(&format!("ORDER BY \"{ROWTIME}\" "), tokens[frame].span.start);
                self.range(tokens, frame, close + 1, w, depth + 1)
            }
            _ => self.range(tokens, open, close + 1, w, depth),
        }
    }
}

/// The columns of a window spec's `PARTITION BY` in tokens `[from, to)` (none without one), or
/// `None` when an item is not a plain (perhaps qualified) column.
fn partition_columns(tokens: &[TokenWithSpan], from: usize, to: usize) -> Option<BTreeSet<String>> {
    let Some(partition) = top_level_word(tokens, from, to, "PARTITION") else { return Some(BTreeSet::new()) };
    let by = next_significant(tokens, partition + 1, to).filter(|&i| word_is(&tokens[i].token, "BY"))?;
    let items: Vec<&Token> =
        tokens[by + 1..to].iter().map(|t| &t.token).filter(|t| !is_blank(t) && **t != Token::EOF).collect();
    items
        .split(|t| **t == Token::Comma)
        .map(|item| match item {
            [Token::Word(column)] | [Token::Word(_), Token::Period, Token::Word(column)] => Some(normalised(column)),
            _ => None,
        })
        .collect()
}

/// Whether `*` after this token starts a select item.
fn starts_item(previous: &Token) -> bool {
    matches!(previous, Token::Comma)
        || word_is(previous, "SELECT")
        || word_is(previous, "STREAM")
        || word_is(previous, "DISTINCT")
}

fn next_significant(tokens: &[TokenWithSpan], from: usize, to: usize) -> Option<usize> {
    (from..to).find(|&i| !is_blank(&tokens[i].token) && tokens[i].token != Token::EOF)
}

/// The `)` closing the `(` at `open`.
pub(crate) fn matching(tokens: &[TokenWithSpan], open: usize, to: usize) -> Option<usize> {
    let mut depth = 0;
    for (i, t) in tokens.iter().enumerate().take(to).skip(open) {
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// The first `word` in `[from, to)` outside any inner parentheses.
pub(crate) fn top_level_word(tokens: &[TokenWithSpan], from: usize, to: usize, word: &str) -> Option<usize> {
    let mut depth = 0;
    for (i, t) in tokens.iter().enumerate().take(to).skip(from) {
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            ref other if depth == 0 && word_is(other, word) => return Some(i),
            _ => {}
        }
    }
    None
}

/// The last word of `[from, to)`, as the dialect names it.
fn last_word(tokens: &[TokenWithSpan], from: usize, to: usize) -> Option<String> {
    tokens[from..to].iter().rev().find_map(|t| match &t.token {
        Token::Word(w) => Some(normalised(w)),
        _ => None,
    })
}

/// `INTERVAL 'n' UNIT` in `[from, to)`, in milliseconds.
pub(crate) fn interval_ms(tokens: &[TokenWithSpan], from: usize, to: usize) -> Option<u64> {
    let significant: Vec<&Token> = tokens[from..to].iter().map(|t| &t.token).filter(|t| !is_blank(t)).collect();
    let [first, Token::SingleQuotedString(count), Token::Word(unit), ..] = significant.as_slice() else { return None };
    if !word_is(first, "INTERVAL") {
        return None;
    }
    let count: f64 = count.trim().parse().ok()?;
    let ms = count * unit_ms(&unit.value)? as f64;
    (ms >= 1.0).then_some(ms as u64)
}

fn unit_ms(unit: &str) -> Option<u64> {
    Some(match unit.to_ascii_uppercase().as_str() {
        "SECOND" => 1_000,
        "MINUTE" => 60_000,
        "HOUR" => 3_600_000,
        "DAY" => 86_400_000,
        _ => return None,
    })
}

fn bad_step(at: Location) -> AnalyticsError {
    AnalyticsError::code(at.line, at.column, "STEP takes a time and an interval: STEP(ROWTIME BY INTERVAL 'n' SECOND).")
}

pub(crate) fn unclosed(at: Location) -> AnalyticsError {
    AnalyticsError::code(at.line, at.column, "This parenthesis is not closed.")
}

#[cfg(test)]
#[path = "dialect_tests.rs"]
mod tests;

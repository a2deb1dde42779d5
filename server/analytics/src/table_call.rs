//! Finding a table function over a cursor in a pump's query:
//! `TABLE(FUNCTION(CURSOR(SELECT STREAM ...), arguments...))`, the form RANDOM_CUT_FOREST,
//! TOP_K_ITEMS_TUMBLING and COUNT_DISTINCT_ITEMS_TUMBLING take. What the arguments mean is the
//! caller's; this finds the cursor's query, the argument tokens and the call's extent.

use datafusion::sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan};

use crate::dialect::{is_blank, matching, unclosed, word_is};
use crate::error::{AnalyticsError, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct TableCall {
    /// The cursor's `SELECT STREAM ...`.
    pub inner: Vec<TokenWithSpan>,
    /// The significant tokens after the cursor, up to the call's closing parenthesis.
    pub arguments: Vec<TokenWithSpan>,
    /// The call's tokens, `TABLE` to its closing parenthesis: `[from, to)`.
    pub from: usize,
    pub to: usize,
    /// Where the function's name is written.
    pub at: Location,
}

/// The call of `function` in `tokens`, if there is one.
pub fn find(tokens: &[TokenWithSpan], function: &str) -> Result<Option<TableCall>> {
    let Some(name) = tokens.iter().position(|t| word_is(&t.token, function)) else { return Ok(None) };
    let at = tokens[name].span.start;
    let misuse = || {
        AnalyticsError::code(
            at.line,
            at.column,
            format!("{function} reads a cursor in a table: TABLE({function}(CURSOR(SELECT STREAM ...), ...))."),
        )
    };
    let significant: Vec<usize> = (0..tokens.len()).filter(|&i| !is_blank(&tokens[i].token)).collect();
    let place = significant.iter().position(|&i| i == name).unwrap_or(0);
    let nth = |offset: isize| place.checked_add_signed(offset).and_then(|p| significant.get(p).copied());
    let is_word = |offset: isize, word: &str| nth(offset).is_some_and(|i| word_is(&tokens[i].token, word));
    let paren = |offset: isize| nth(offset).filter(|&i| tokens[i].token == Token::LParen);
    let (Some(table_open), Some(call_open), Some(cursor_open)) = (paren(-1), paren(1), paren(3)) else {
        return Err(misuse());
    };
    if !is_word(-2, "TABLE") || !is_word(2, "CURSOR") {
        return Err(misuse());
    }
    let cursor_close = matching(tokens, cursor_open, tokens.len()).ok_or_else(|| unclosed(at))?;
    let call_close = matching(tokens, call_open, tokens.len()).ok_or_else(|| unclosed(at))?;
    let table_close = matching(tokens, table_open, tokens.len()).ok_or_else(|| unclosed(at))?;
    if (call_close + 1..table_close).any(|i| !is_blank(&tokens[i].token)) {
        return Err(misuse());
    }
    let arguments = tokens[cursor_close + 1..call_close].iter().filter(|t| !is_blank(&t.token)).cloned().collect();
    Ok(Some(TableCall {
        inner: tokens[cursor_open + 1..cursor_close].to_vec(),
        arguments,
        from: significant[place - 2],
        to: table_close + 1,
        at,
    }))
}

/// The arguments after the cursor, each preceded by a comma (a trailing comma is allowed, as
/// the service's own examples write one).
pub fn split_arguments(call: &TableCall) -> Result<Vec<TokenWithSpan>> {
    let mut values = Vec::new();
    let mut tokens = call.arguments.iter().peekable();
    while let Some(comma) = tokens.next() {
        if comma.token != Token::Comma {
            let at = comma.span.start;
            return Err(AnalyticsError::code(at.line, at.column, format!("Expected a comma, found {}.", comma.token)));
        }
        match tokens.next() {
            Some(value) => values.push(value.clone()),
            None => break,
        }
    }
    Ok(values)
}

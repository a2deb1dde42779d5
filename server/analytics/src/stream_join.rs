//! A stream-to-stream join, as the dialect writes it: one of the two streams carries a window,
//! `FROM "ORDERS" OVER (RANGE INTERVAL '1' MINUTE PRECEDING) AS o JOIN "TRADES" AS t ON ...`.
//! Each row of the other stream (the driving one) joins the windowed stream's rows of that range
//! before it, up to its own ROWTIME. The window is taken out of the query and put into the ON
//! condition as a ROWTIME range, and the driving stream is made the query's first source, so
//! the rows written carry its ROWTIME. The join is inner, or a LEFT JOIN whose right side is
//! the windowed stream.

use datafusion::sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan};

use crate::dialect::{interval_ms, is_blank, is_keyword, matching, normalised, word_is};
use crate::error::{AnalyticsError, Result};
use crate::stagger_clause::glue;

#[derive(Debug, Clone, PartialEq)]
pub struct StreamJoin {
    /// The query with the window in its ON condition and the driving stream first.
    pub query: Vec<TokenWithSpan>,
    /// The windowed stream, and how far back its rows join.
    pub history: String,
    pub range_ms: u64,
}

/// A source in the FROM clause: its tokens `[from, to)`, name and the name the query uses.
struct Source {
    from: usize,
    to: usize,
    name: String,
    qualifier: String,
    /// The OVER clause's tokens `[over, close]`, and the interval's `[from, to)`.
    window: Option<(usize, usize, usize, usize)>,
}

/// Words that end a source in the FROM clause, or the ON condition.
const ENDS: &[&str] = &[
    "ON", "JOIN", "INNER", "LEFT", "RIGHT", "FULL", "CROSS", "WHERE", "GROUP", "ORDER", "HAVING", "WINDOW", "LIMIT",
    "UNION",
];

/// The join in `tokens`, if a source of the query carries a window.
pub fn find(tokens: &[TokenWithSpan]) -> Result<Option<StreamJoin>> {
    let top = top_level(tokens);
    let Some(from) = top.iter().copied().find(|&i| word_is(&tokens[i].token, "FROM")) else { return Ok(None) };
    let first = source(tokens, &top, from)?;
    let Some(first) = first else { return Ok(None) };
    let join_words: Vec<usize> =
        top.iter().copied().filter(|&i| i >= first.to).take_while(|&i| is_join_word(&tokens[i].token)).collect();
    let Some(&join_at) = join_words.iter().find(|&&i| word_is(&tokens[i].token, "JOIN")) else {
        return match first.window {
            Some((over, ..)) => {
                Err(at_token(tokens, over, "A window on a FROM stream needs a JOIN with another stream."))
            }
            None => Ok(None),
        };
    };
    let Some(second) = source(tokens, &top, join_at)? else { return Ok(None) };
    let (history, driving, history_first) = match (&first.window, &second.window) {
        (Some(_), None) => (&first, &second, true),
        (None, Some(_)) => (&second, &first, false),
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err(at_token(tokens, second.from, "Only one of the two joined streams may carry a window."));
        }
    };
    if history.name == driving.name {
        return Err(at_token(
            tokens,
            second.from,
            "A stream joins itself through a pump that copies it into a second stream.",
        ));
    }
    let left = join_words.first().is_some_and(|&i| word_is(&tokens[i].token, "LEFT"));
    let inner = join_words.iter().all(|&i| word_is(&tokens[i].token, "JOIN") || word_is(&tokens[i].token, "INNER"));
    if !(inner || (left && !history_first)) {
        return Err(at_token(
            tokens,
            join_words[0],
            "A stream-to-stream join is an inner join, or a LEFT JOIN whose right side is the windowed stream.",
        ));
    }
    let (over, close, interval_from, interval_to) = history.window.unwrap_or_default();
    let at = tokens[over].span.start;
    let range_ms = interval_ms(tokens, interval_from, interval_to).ok_or_else(|| {
        AnalyticsError::code(at.line, at.column, "A joined stream's window is (RANGE INTERVAL 'n' unit PRECEDING).")
    })?;
    let on = top.iter().copied().find(|&i| i >= second.to && word_is(&tokens[i].token, "ON"));
    let on = on.ok_or_else(|| AnalyticsError::code(at.line, at.column, "A stream-to-stream join needs ON."))?;
    let on_end = top
        .iter()
        .copied()
        .find(|&i| i > on && ENDS.iter().any(|w| word_is(&tokens[i].token, w)))
        .unwrap_or(tokens.len());
    let mut query = tokens[..first.from].to_vec();
    let history_tokens: Vec<TokenWithSpan> =
        tokens[history.from..over].iter().chain(&tokens[close + 1..history.to]).cloned().collect();
    let driving_tokens = tokens[driving.from..driving.to].to_vec();
    // The driving stream first either way: for an inner join the order does not matter, and a
    // LEFT JOIN was only accepted with the windowed stream on the right.
    query.extend(driving_tokens);
    query.extend_from_slice(&tokens[first.to..second.from]);
    query.extend(history_tokens);
    query.extend_from_slice(&tokens[second.to..=on]);
    let (h, d) = (&history.qualifier, &driving.qualifier);
    query.extend(glue(&format!(" \"{h}\".ROWTIME >= \"{d}\".ROWTIME - "), at)?);
    query.extend_from_slice(&tokens[interval_from..interval_to]);
    query.extend(glue(&format!(" AND \"{h}\".ROWTIME <= \"{d}\".ROWTIME AND ("), at)?);
    query.extend_from_slice(&tokens[on + 1..on_end]);
    query.extend(glue(") ", at)?);
    query.extend_from_slice(&tokens[on_end..]);
    Ok(Some(StreamJoin { query, history: history.name.clone(), range_ms }))
}

/// Indexes of the query's significant tokens outside parentheses (parentheses included).
fn top_level(tokens: &[TokenWithSpan]) -> Vec<usize> {
    let mut depth = 0;
    let mut found = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        match t.token {
            Token::LParen => {
                if depth == 0 {
                    found.push(i);
                }
                depth += 1;
            }
            Token::RParen => depth -= 1,
            _ if depth == 0 && !is_blank(&t.token) => found.push(i),
            _ => {}
        }
    }
    found
}

fn is_join_word(token: &Token) -> bool {
    ["JOIN", "INNER", "LEFT", "RIGHT", "FULL", "CROSS", "OUTER"].iter().any(|w| word_is(token, w))
}

/// The source after `keyword` (FROM or JOIN): a stream name, an optional window, an alias.
fn source(tokens: &[TokenWithSpan], top: &[usize], keyword: usize) -> Result<Option<Source>> {
    let mut rest = top.iter().copied().filter(|&i| i > keyword);
    let Some(name_at) = rest.next() else { return Ok(None) };
    let Token::Word(name) = &tokens[name_at].token else { return Ok(None) };
    let name = normalised(name);
    let mut to = name_at + 1;
    let mut window = None;
    let mut next = rest.next();
    if let Some(over) = next.filter(|&i| word_is(&tokens[i].token, "OVER")) {
        let open = (over + 1..tokens.len())
            .find(|&i| !is_blank(&tokens[i].token))
            .filter(|&i| tokens[i].token == Token::LParen);
        let open =
            open.ok_or_else(|| at_token(tokens, over, "OVER on a stream takes (RANGE INTERVAL 'n' unit PRECEDING)."))?;
        let close = matching(tokens, open, tokens.len()).ok_or_else(|| at_token(tokens, over, "Unclosed OVER."))?;
        let words: Vec<usize> = (open + 1..close).filter(|&i| !is_blank(&tokens[i].token)).collect();
        let (Some(&range), Some(&preceding)) = (words.first(), words.last()) else {
            return Err(at_token(tokens, over, "OVER on a stream takes (RANGE INTERVAL 'n' unit PRECEDING)."));
        };
        if !word_is(&tokens[range].token, "RANGE") || !word_is(&tokens[preceding].token, "PRECEDING") {
            return Err(at_token(tokens, over, "OVER on a stream takes (RANGE INTERVAL 'n' unit PRECEDING)."));
        }
        window = Some((over, close, range + 1, preceding));
        to = close + 1;
        next = top.iter().copied().find(|&i| i > close);
    }
    let mut qualifier = name.clone();
    if let Some(mut i) = next {
        if word_is(&tokens[i].token, "AS") {
            to = i + 1;
            i = top.iter().copied().find(|&j| j > i).unwrap_or(i);
        }
        if let Token::Word(alias) = &tokens[i].token
            && (alias.quote_style.is_some() || !is_keyword(&alias.value))
            && !ENDS.iter().any(|w| word_is(&tokens[i].token, w))
        {
            qualifier = normalised(alias);
            to = i + 1;
        }
    }
    Ok(Some(Source { from: name_at, to, name, qualifier, window }))
}

fn at_token(tokens: &[TokenWithSpan], i: usize, message: &str) -> AnalyticsError {
    let at: Location = tokens[i].span.start;
    AnalyticsError::code(at.line, at.column, message)
}

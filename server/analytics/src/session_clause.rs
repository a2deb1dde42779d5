//! `GROUP BY a, b, SESSION(ROWTIME, INTERVAL 'n' unit)`: a session window per partition (the
//! other keys): it opens with the partition's first row and ends `n` after its latest row, so
//! rows closer together than `n` share a session. Kinesis Data Analytics listed session windows
//! without giving them a syntax; this is the group-window form of Apache Calcite, whose SQL the
//! service's dialect comes from, and of Flink SQL. The query is rewritten as a stagger window's
//! is: grouped by the partition, with a key query placing each source row.

use datafusion::sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan};

use crate::dialect::{interval_ms, is_blank, matching, top_level_word, word_is};
use crate::error::{AnalyticsError, Result};
use crate::partition_windows::Rule;
use crate::stagger_clause::{PartitionClause, glue, key_query};

/// The clause in `tokens`, if the query groups by a SESSION.
pub fn find(tokens: &[TokenWithSpan]) -> Result<Option<PartitionClause>> {
    let Some(group) = top_level_word(tokens, 0, tokens.len(), "GROUP") else { return Ok(None) };
    let Some(by) = (group + 1..tokens.len()).find(|&i| !is_blank(&tokens[i].token)) else { return Ok(None) };
    if !word_is(&tokens[by].token, "BY") {
        return Ok(None);
    }
    let end = ["HAVING", "ORDER", "LIMIT"]
        .iter()
        .filter_map(|word| top_level_word(tokens, by, tokens.len(), word))
        .min()
        .unwrap_or_else(|| trailing_semicolon(tokens));
    let items = split_top_level(tokens, by + 1, end);
    let Some(session) = items.iter().position(|&(from, to)| is_session(tokens, from, to)) else { return Ok(None) };
    let (from, to) = items[session];
    let at = tokens[from..to].iter().find(|t| !is_blank(&t.token)).map_or(tokens[group].span.start, |t| t.span.start);
    let gap_ms = session_gap(tokens, from, to, at)?;
    let mut keys = Vec::new();
    for (_, &(from, to)) in items.iter().enumerate().filter(|(i, _)| *i != session) {
        if !keys.is_empty() {
            keys.extend(glue(", ", at)?);
        }
        keys.extend_from_slice(&tokens[from..to]);
    }
    // Without other keys every row is of one partition (0), and the query still groups (by a
    // constant) so the dialect reads it as an aggregate.
    let partition = if keys.is_empty() { glue("0", at)? } else { keys.clone() };
    if keys.is_empty() {
        keys = glue("TRUE", at)?;
    }
    let head = &tokens[..group];
    let mut query = head.to_vec();
    query.extend(glue(" GROUP BY ", at)?);
    query.extend_from_slice(&keys);
    query.extend(glue(" ", at)?);
    query.extend_from_slice(&tokens[end..]);
    Ok(Some(PartitionClause {
        rule: Rule::Session { gap_ms: gap_ms as i64 },
        query,
        key_query: key_query(head, &partition, at)?,
    }))
}

/// Where the query ends before a closing `;`.
fn trailing_semicolon(tokens: &[TokenWithSpan]) -> usize {
    let last = (0..tokens.len()).rev().find(|&i| !is_blank(&tokens[i].token));
    match last {
        Some(i) if tokens[i].token == Token::SemiColon => i,
        _ => tokens.len(),
    }
}

/// The items of a list in `[from, to)`, split at commas outside parentheses.
fn split_top_level(tokens: &[TokenWithSpan], from: usize, to: usize) -> Vec<(usize, usize)> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0usize, from);
    for (i, token) in tokens.iter().enumerate().take(to).skip(from) {
        match token.token {
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            Token::Comma if depth == 0 => {
                items.push((start, i));
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push((start, to));
    items
}

fn is_session(tokens: &[TokenWithSpan], from: usize, to: usize) -> bool {
    let mut significant = (from..to).filter(|&i| !is_blank(&tokens[i].token));
    let (Some(name), Some(open)) = (significant.next(), significant.next()) else { return false };
    word_is(&tokens[name].token, "SESSION") && tokens[open].token == Token::LParen
}

/// `SESSION(ROWTIME, INTERVAL 'n' unit)`'s gap, in ms.
fn session_gap(tokens: &[TokenWithSpan], from: usize, to: usize, at: Location) -> Result<u64> {
    let misuse = || {
        AnalyticsError::code(
            at.line,
            at.column,
            "A session window is written GROUP BY ..., SESSION(ROWTIME, INTERVAL 'n' SECOND), a gap of a second or more.",
        )
    };
    let open = (from..to).find(|&i| tokens[i].token == Token::LParen).ok_or_else(misuse)?;
    let close = matching(tokens, open, to).ok_or_else(misuse)?;
    let arguments = split_top_level(tokens, open + 1, close);
    let [(time_from, time_to), (gap_from, gap_to)] = arguments.as_slice() else { return Err(misuse()) };
    let time = (*time_from..*time_to).rev().find(|&i| !is_blank(&tokens[i].token)).ok_or_else(misuse)?;
    if !word_is(&tokens[time].token, "ROWTIME") {
        return Err(AnalyticsError::code(at.line, at.column, "A session window is over ROWTIME."));
    }
    interval_ms(tokens, *gap_from, *gap_to).filter(|ms| *ms >= 1_000).ok_or_else(misuse)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::tokenize;

    fn text(tokens: &[TokenWithSpan]) -> String {
        tokens.iter().map(|t| t.token.to_string()).collect()
    }

    #[test]
    fn the_session_key_leaves_the_group_by_and_gives_the_gap() {
        let sql = "SELECT STREAM user_id, COUNT(*) FROM clicks WHERE n > 0 GROUP BY user_id, SESSION(clicks.ROWTIME, INTERVAL '30' SECOND) HAVING COUNT(*) > 1;";
        let clause = find(&tokenize(sql).expect("tokens")).expect("read").expect("found");
        assert_eq!(clause.rule, Rule::Session { gap_ms: 30_000 });
        assert_eq!(
            text(&clause.query),
            "SELECT STREAM user_id, COUNT(*) FROM clicks WHERE n > 0  GROUP BY  user_id HAVING COUNT(*) > 1;"
        );
        assert_eq!(
            text(&clause.key_query),
            "SELECT STREAM  user_id, CASE WHEN ( n > 0 ) THEN TRUE ELSE FALSE END FROM clicks "
        );
        assert_eq!(
            find(&tokenize("SELECT STREAM a FROM s GROUP BY a, STEP(ROWTIME BY INTERVAL '1' SECOND)").expect("tokens"))
                .expect("read"),
            None
        );
    }

    #[test]
    fn a_session_alone_makes_one_partition() {
        let sql = "SELECT STREAM COUNT(*) FROM s GROUP BY SESSION(ROWTIME, INTERVAL '1' MINUTE)";
        let clause = find(&tokenize(sql).expect("tokens")).expect("read").expect("found");
        assert_eq!(clause.rule, Rule::Session { gap_ms: 60_000 });
        assert_eq!(text(&clause.query).trim_end(), "SELECT STREAM COUNT(*) FROM s  GROUP BY TRUE");
        assert_eq!(text(&clause.key_query), "SELECT STREAM 0, TRUE FROM s ");
    }

    #[test]
    fn a_malformed_session_is_refused_where_it_is_written() {
        let error = find(&tokenize("SELECT STREAM COUNT(*) FROM s\nGROUP BY SESSION(ROWTIME)").expect("tokens"))
            .expect_err("no gap");
        assert!(matches!(error, AnalyticsError::Code { line: 2, column: 10, .. }), "{error}");
        let error =
            find(&tokenize("SELECT STREAM COUNT(*) FROM s GROUP BY SESSION(t, INTERVAL '1' SECOND)").expect("tokens"))
                .expect_err("not ROWTIME");
        assert!(error.to_string().contains("over ROWTIME"), "{error}");
        let error = find(
            &tokenize("SELECT STREAM COUNT(*) FROM s GROUP BY SESSION(ROWTIME, INTERVAL '1' WEEK)").expect("tokens"),
        )
        .expect_err("weeks");
        assert!(error.to_string().contains("INTERVAL 'n' SECOND"), "{error}");
    }
}

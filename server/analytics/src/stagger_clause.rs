//! `WINDOWED BY STAGGER (PARTITION BY a, b RANGE INTERVAL 'n' unit)` at the end of a pump's
//! query: a window per partition that opens with the partition's first row and closes `n` later.
//! The query is rewritten to group by the partition (each window's rows give one group), and a
//! second query gives each source row its partition, and whether the WHERE keeps it, so rows can
//! be put into their windows before the aggregate runs.

use datafusion::sql::sqlparser::tokenizer::{Location, TokenWithSpan};

use crate::dialect::{interval_ms, is_blank, matching, tokenize, top_level_word, word_is};
use crate::error::{AnalyticsError, Result};
use crate::partition_windows::Rule;

/// A window per partition (stagger here, session in session_clause.rs), as a pump runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionClause {
    pub rule: Rule,
    /// The query without the clause, grouped by the partition.
    pub query: Vec<TokenWithSpan>,
    /// `SELECT <partition>, <the WHERE, as a flag> FROM <the query's FROM>`: one row per source row.
    pub key_query: Vec<TokenWithSpan>,
}

/// The clause in `tokens`, if the query has one.
pub fn find(tokens: &[TokenWithSpan]) -> Result<Option<PartitionClause>> {
    let Some(windowed) = top_level_word(tokens, 0, tokens.len(), "WINDOWED") else { return Ok(None) };
    let at = tokens[windowed].span.start;
    let mut rest = (windowed + 1..tokens.len()).filter(|&i| !is_blank(&tokens[i].token));
    let (Some(by), Some(stagger), Some(open)) = (rest.next(), rest.next(), rest.next()) else {
        return Err(misuse(at));
    };
    if !word_is(&tokens[by].token, "BY") || !word_is(&tokens[stagger].token, "STAGGER") {
        return Err(misuse(at));
    }
    let close = matching(tokens, open, tokens.len()).ok_or_else(|| misuse(at))?;
    if (close + 1..tokens.len()).any(|i| !is_blank(&tokens[i].token) && tokens[i].token.to_string() != ";") {
        return Err(AnalyticsError::code(at.line, at.column, "WINDOWED BY STAGGER ends the query."));
    }
    let partition = top_level_word(tokens, open + 1, close, "PARTITION").ok_or_else(|| misuse(at))?;
    let range = top_level_word(tokens, open + 1, close, "RANGE").ok_or_else(|| misuse(at))?;
    let by_partition = (partition + 1..range).find(|&i| !is_blank(&tokens[i].token)).ok_or_else(|| misuse(at))?;
    if !word_is(&tokens[by_partition].token, "BY") {
        return Err(misuse(at));
    }
    let keys = &tokens[by_partition + 1..range];
    let range_ms = interval_ms(tokens, range + 1, close).ok_or_else(|| {
        AnalyticsError::code(at.line, at.column, "STAGGER needs RANGE INTERVAL 'n' SECOND, MINUTE, HOUR or DAY.")
    })?;
    let head = &tokens[..windowed];
    let mut query = head.to_vec();
    query.extend(glue(" GROUP BY ", at)?);
    query.extend_from_slice(keys);
    let rule = Rule::Stagger { range_ms: range_ms as i64 };
    Ok(Some(PartitionClause { rule, query, key_query: key_query(head, keys, at)? }))
}

/// The partition of each source row, and whether the query's WHERE keeps it.
pub(crate) fn key_query(head: &[TokenWithSpan], keys: &[TokenWithSpan], at: Location) -> Result<Vec<TokenWithSpan>> {
    let from = top_level_word(head, 0, head.len(), "FROM").ok_or_else(|| misuse(at))?;
    let filter = top_level_word(head, from, head.len(), "WHERE");
    let mut query = glue("SELECT STREAM ", at)?;
    query.extend_from_slice(keys);
    match filter {
        Some(filter) => {
            query.extend(glue(", CASE WHEN (", at)?);
            query.extend_from_slice(&head[filter + 1..]);
            query.extend(glue(") THEN TRUE ELSE FALSE END ", at)?);
            query.extend_from_slice(&head[from..filter]);
        }
        None => {
            query.extend(glue(", TRUE ", at)?);
            query.extend_from_slice(&head[from..]);
        }
    }
    Ok(query)
}

/// Tokens of our own text, placed at `at` for errors.
pub(crate) fn glue(text: &str, at: Location) -> Result<Vec<TokenWithSpan>> {
    let mut tokens = tokenize(text)?;
    for token in &mut tokens {
        token.span.start = at;
        token.span.end = at;
    }
    Ok(tokens)
}

fn misuse(at: Location) -> AnalyticsError {
    AnalyticsError::code(
        at.line,
        at.column,
        "A stagger window is written WINDOWED BY STAGGER (PARTITION BY ... RANGE INTERVAL 'n' MINUTE).",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(tokens: &[TokenWithSpan]) -> String {
        tokens.iter().map(|t| t.token.to_string()).collect()
    }

    #[test]
    fn the_clause_becomes_a_group_by_and_a_key_query() {
        let sql = "SELECT STREAM s, COUNT(*) FROM src WHERE p > 1 WINDOWED BY STAGGER (PARTITION BY FLOOR(t TO MINUTE), s RANGE INTERVAL '1' MINUTE)";
        let clause = find(&tokenize(sql).expect("tokens")).expect("read").expect("found");
        assert_eq!(clause.rule, Rule::Stagger { range_ms: 60_000 });
        assert_eq!(
            text(&clause.query),
            "SELECT STREAM s, COUNT(*) FROM src WHERE p > 1  GROUP BY  FLOOR(t TO MINUTE), s "
        );
        assert_eq!(
            text(&clause.key_query),
            "SELECT STREAM  FLOOR(t TO MINUTE), s , CASE WHEN ( p > 1 ) THEN TRUE ELSE FALSE END FROM src "
        );
        assert_eq!(find(&tokenize("SELECT STREAM * FROM src").expect("tokens")).expect("read"), None);
    }

    #[test]
    fn a_malformed_clause_is_refused_where_it_is_written() {
        let error = find(
            &tokenize("SELECT STREAM COUNT(*) FROM src\nWINDOWED BY STAGGER (RANGE INTERVAL '1' MINUTE)")
                .expect("tokens"),
        )
        .expect_err("no partition");
        assert!(matches!(error, AnalyticsError::Code { line: 2, column: 1, .. }), "{error}");
        let error = find(
            &tokenize("SELECT STREAM COUNT(*) FROM src WINDOWED BY STAGGER (PARTITION BY s RANGE INTERVAL '1' WEEK)")
                .expect("tokens"),
        )
        .expect_err("weeks");
        assert!(error.to_string().contains("RANGE INTERVAL"), "{error}");
    }
}

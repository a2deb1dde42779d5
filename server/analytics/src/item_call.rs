//! Finding `TABLE(TOP_K_ITEMS_TUMBLING(CURSOR(...), 'columnName', K, windowSize))` and
//! `TABLE(COUNT_DISTINCT_ITEMS_TUMBLING(CURSOR(...), 'columnName', windowSize))` in a pump's
//! query, with their arguments checked against the limits the SQL reference gives (K from 1 to
//! 100,000; a window from 1 to 3,600 seconds).

use datafusion::sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan};

use crate::error::{AnalyticsError, Result};
use crate::table_call::{self, TableCall, split_arguments};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemFunction {
    /// The K most frequent values of the column in each window, with their counts.
    TopK { k: u64 },
    /// How many distinct values the column has in each window.
    CountDistinct,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ItemCall {
    pub function: ItemFunction,
    pub call: TableCall,
    /// The column, as the cursor's rows name it (upper case unless quoted with other case).
    pub column: String,
    pub window_s: u64,
}

const TOP_K: &str = "TOP_K_ITEMS_TUMBLING";
const COUNT_DISTINCT: &str = "COUNT_DISTINCT_ITEMS_TUMBLING";

/// The call in `tokens`, if there is one.
pub fn find(tokens: &[TokenWithSpan]) -> Result<Option<ItemCall>> {
    if let Some(call) = table_call::find(tokens, TOP_K)? {
        let arguments = split_arguments(&call)?;
        let [column, k, window] = arguments.as_slice() else {
            return Err(usage(call.at, TOP_K, "'columnName', K, windowSize"));
        };
        let k = number(k, TOP_K, "K", 1, 100_000)?;
        let (column, window_s) = (column_name(column, TOP_K)?, number(window, TOP_K, "windowSize", 1, 3_600)?);
        return Ok(Some(ItemCall { function: ItemFunction::TopK { k }, call, column, window_s }));
    }
    let Some(call) = table_call::find(tokens, COUNT_DISTINCT)? else { return Ok(None) };
    let arguments = split_arguments(&call)?;
    let [column, window] = arguments.as_slice() else {
        return Err(usage(call.at, COUNT_DISTINCT, "'columnName', windowSize"));
    };
    let (column, window_s) =
        (column_name(column, COUNT_DISTINCT)?, number(window, COUNT_DISTINCT, "windowSize", 1, 3_600)?);
    Ok(Some(ItemCall { function: ItemFunction::CountDistinct, call, column, window_s }))
}

fn usage(at: Location, function: &str, arguments: &str) -> AnalyticsError {
    AnalyticsError::code(at.line, at.column, format!("{function} takes a cursor, then {arguments}."))
}

/// `'column'`: the name in single quotes, upper-cased as an unquoted identifier would be
/// unless it holds lower case written on purpose in a quoted stream column.
fn column_name(token: &TokenWithSpan, function: &str) -> Result<String> {
    match &token.token {
        Token::SingleQuotedString(name) if !name.is_empty() => Ok(name.clone()),
        other => Err(AnalyticsError::code(
            token.span.start.line,
            token.span.start.column,
            format!("{function}: the column name must be in single quotes, not {other}."),
        )),
    }
}

/// A whole-number argument within `[low, high]`, or the error naming it where it is written.
pub(crate) fn number(token: &TokenWithSpan, function: &str, name: &str, low: u64, high: u64) -> Result<u64> {
    let at = token.span.start;
    let value = match &token.token {
        Token::Number(text, _) => text.parse::<u64>().ok(),
        _ => None,
    };
    value.filter(|v| (low..=high).contains(v)).ok_or_else(|| {
        AnalyticsError::code(
            at.line,
            at.column,
            format!("{function}: {name} must be a whole number from {low} to {high}, not {}.", token.token),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::tokenize;

    fn call(sql: &str) -> Result<Option<ItemCall>> {
        find(&tokenize(sql).expect("as the test set it up"))
    }

    #[test]
    fn top_k_gives_its_column_k_and_window() {
        let found = call(
            "SELECT STREAM * FROM TABLE(TOP_K_ITEMS_TUMBLING(CURSOR(SELECT STREAM * FROM s), 'TICKER_SYMBOL', 5, 60))",
        )
        .expect("a call")
        .expect("found");
        assert_eq!(
            (found.function, found.column.as_str(), found.window_s),
            (ItemFunction::TopK { k: 5 }, "TICKER_SYMBOL", 60)
        );
        let trailing =
            call("SELECT STREAM * FROM TABLE(TOP_K_ITEMS_TUMBLING(CURSOR(SELECT STREAM * FROM s), 'c', 1, 1, ))");
        assert!(trailing.expect("a trailing comma is allowed").is_some());
    }

    #[test]
    fn count_distinct_gives_its_column_and_window() {
        let found = call("SELECT STREAM NUMBER_OF_DISTINCT_ITEMS FROM TABLE(COUNT_DISTINCT_ITEMS_TUMBLING(CURSOR(SELECT STREAM * FROM s), 'review_id', 5))")
            .expect("a call")
            .expect("found");
        assert_eq!(
            (found.function, found.column.as_str(), found.window_s),
            (ItemFunction::CountDistinct, "review_id", 5)
        );
        assert_eq!(call("SELECT STREAM * FROM s").expect("no call"), None);
    }

    #[test]
    fn bad_arguments_are_refused_where_they_are_written() {
        let error =
            call("SELECT STREAM * FROM TABLE(TOP_K_ITEMS_TUMBLING(CURSOR(SELECT STREAM * FROM s), 'c', 0, 60))")
                .expect_err("K of 0");
        assert_eq!(
            error.to_string(),
            "TOP_K_ITEMS_TUMBLING: K must be a whole number from 1 to 100000, not 0. (line 1, column 86)"
        );
        let error =
            call("SELECT STREAM * FROM TABLE(COUNT_DISTINCT_ITEMS_TUMBLING(CURSOR(SELECT STREAM * FROM s), c, 60))")
                .expect_err("an unquoted column");
        assert!(error.to_string().contains("single quotes"), "{error}");
        let error = call("SELECT STREAM * FROM TABLE(TOP_K_ITEMS_TUMBLING(CURSOR(SELECT STREAM * FROM s), 'c', 60))")
            .expect_err("no window");
        assert!(error.to_string().contains("'columnName', K, windowSize"), "{error}");
        let error = call(
            "SELECT STREAM * FROM TABLE(COUNT_DISTINCT_ITEMS_TUMBLING(CURSOR(SELECT STREAM * FROM s), 'c', 3601))",
        )
        .expect_err("over an hour");
        assert!(error.to_string().contains("from 1 to 3600"), "{error}");
    }
}

//! Finding `TABLE(RANDOM_CUT_FOREST(CURSOR(SELECT STREAM ...)[, numberOfTrees, subSampleSize,
//! timeDecay, shingleSize]))` in a pump's query: the query the cursor reads, the parameters,
//! and the tokens the call takes (which the pump reads as the forest's scored stream instead).

use datafusion::sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan};

use crate::error::{AnalyticsError, Result};
use crate::forest::ForestParams;
use crate::table_call;

pub const FUNCTION: &str = "RANDOM_CUT_FOREST";
pub const WITH_EXPLANATION: &str = "RANDOM_CUT_FOREST_WITH_EXPLANATION";

#[derive(Debug, Clone, PartialEq)]
pub struct ForestCall {
    /// The cursor's `SELECT STREAM ...`.
    pub inner: Vec<TokenWithSpan>,
    pub params: ForestParams,
    /// The call's tokens, `TABLE` to its closing parenthesis: `[from, to)`.
    pub from: usize,
    pub to: usize,
}

/// The call in `tokens` (of either function), if there is one.
pub fn find(tokens: &[TokenWithSpan]) -> Result<Option<ForestCall>> {
    if let Some(call) = table_call::find(tokens, WITH_EXPLANATION)? {
        let mut arguments = call.arguments.clone();
        let directed = with_directionality(&mut arguments, call.at)?;
        let params = ForestParams { explanation: Some(directed), ..params(&arguments, call.at)? };
        return Ok(Some(ForestCall { inner: call.inner, params, from: call.from, to: call.to }));
    }
    let Some(call) = table_call::find(tokens, FUNCTION)? else { return Ok(None) };
    let params = params(&call.arguments, call.at)?;
    Ok(Some(ForestCall { inner: call.inner, params, from: call.from, to: call.to }))
}

/// RANDOM_CUT_FOREST_WITH_EXPLANATION's last argument, `true` or `false`, taken off the
/// arguments (false when it is left out, with the numbers before it).
fn with_directionality(arguments: &mut Vec<TokenWithSpan>, at: Location) -> Result<bool> {
    let Some(last) = arguments.last() else { return Ok(false) };
    let directed = match &last.token {
        Token::Word(word) if word.value.eq_ignore_ascii_case("true") => true,
        Token::Word(word) if word.value.eq_ignore_ascii_case("false") => false,
        _ => return Ok(false),
    };
    // `, true` goes; what stays must be the four numbers, each after its comma.
    arguments.truncate(arguments.len().saturating_sub(2));
    let numbers = arguments.iter().filter(|t| matches!(t.token, Token::Number(..))).count();
    if numbers != 4 || arguments.len() != 8 {
        return Err(AnalyticsError::code(
            at.line,
            at.column,
            "RANDOM_CUT_FOREST_WITH_EXPLANATION: withDirectionality comes after all four numbers.",
        ));
    }
    Ok(directed)
}

/// `, n, n, n, n` after the cursor: each may be left out from the end.
fn params(tokens: &[TokenWithSpan], at: Location) -> Result<ForestParams> {
    let mut values = Vec::new();
    let mut expect_comma = true;
    for t in tokens {
        match (&t.token, expect_comma) {
            (Token::Comma, true) => expect_comma = false,
            (Token::Number(text, _), false) => {
                let value = text.parse::<u64>().map_err(|_| bad_param(t.span.start, text))?;
                values.push((value, t.span.start));
                expect_comma = true;
            }
            (other, _) => return Err(bad_param(t.span.start, &other.to_string())),
        }
    }
    if !expect_comma || values.len() > 4 {
        return Err(AnalyticsError::code(
            at.line,
            at.column,
            "RANDOM_CUT_FOREST takes a cursor and up to four numbers: numberOfTrees, subSampleSize, timeDecay, shingleSize.",
        ));
    }
    let mut params = ForestParams::default();
    let limits: [(&str, u64, u64); 4] = [
        ("numberOfTrees", 1, 1_000),
        ("subSampleSize", 10, 1_000),
        ("timeDecay", 1, u64::from(u32::MAX)),
        ("shingleSize", 1, 30),
    ];
    for (index, (value, at)) in values.into_iter().enumerate() {
        let (name, low, high) = limits[index];
        if !(low..=high).contains(&value) {
            return Err(AnalyticsError::code(
                at.line,
                at.column,
                format!("RANDOM_CUT_FOREST: {name} must be between {low} and {high}, not {value}."),
            ));
        }
        let value_usize = value as usize;
        match index {
            0 => params.number_of_trees = value_usize,
            1 => params.sub_sample_size = value_usize,
            2 => params.time_decay = value,
            _ => params.shingle_size = value_usize,
        }
    }
    if params.sub_sample_size as u64 > params.time_decay {
        return Err(AnalyticsError::code(
            at.line,
            at.column,
            "RANDOM_CUT_FOREST: subSampleSize must not be larger than timeDecay.",
        ));
    }
    Ok(params)
}

fn bad_param(at: Location, text: &str) -> AnalyticsError {
    AnalyticsError::code(at.line, at.column, format!("RANDOM_CUT_FOREST: {text} is not a whole number."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::tokenize;

    fn call(sql: &str) -> Result<Option<ForestCall>> {
        find(&tokenize(sql).expect("as the test set it up"))
    }

    #[test]
    fn the_call_gives_its_cursor_and_parameters() {
        let sql = "SELECT STREAM * FROM TABLE(RANDOM_CUT_FOREST(CURSOR(SELECT STREAM x FROM s), 50, 128, 1000, 2)) WHERE 1 = 1";
        let found = call(sql).expect("a call").expect("found");
        let inner: String = found.inner.iter().map(|t| t.token.to_string()).collect();
        assert_eq!(inner, "SELECT STREAM x FROM s");
        assert_eq!(
            found.params,
            ForestParams {
                number_of_trees: 50,
                sub_sample_size: 128,
                time_decay: 1000,
                shingle_size: 2,
                explanation: None
            }
        );
        let tokens = tokenize(sql).expect("as the test set it up");
        let rest: String = tokens[found.to..].iter().map(|t| t.token.to_string()).collect();
        assert_eq!(rest, " WHERE 1 = 1");
    }

    #[test]
    fn left_out_parameters_take_their_defaults() {
        let found = call("SELECT STREAM * FROM TABLE(RANDOM_CUT_FOREST(CURSOR(SELECT STREAM * FROM s), 20))")
            .expect("a call")
            .expect("found");
        assert_eq!(found.params, ForestParams { number_of_trees: 20, ..ForestParams::default() });
        assert_eq!(call("SELECT STREAM * FROM s").expect("no call"), None);
    }

    #[test]
    fn the_explanation_call_takes_its_directionality_last() {
        let sql = "SELECT STREAM * FROM TABLE(RANDOM_CUT_FOREST_WITH_EXPLANATION(CURSOR(SELECT STREAM x FROM s), 100, 256, 100000, 1, true))";
        let found = call(sql).expect("a call").expect("found");
        assert_eq!(found.params, ForestParams { explanation: Some(true), ..ForestParams::default() });
        let plain =
            call("SELECT STREAM * FROM TABLE(RANDOM_CUT_FOREST_WITH_EXPLANATION(CURSOR(SELECT STREAM x FROM s)))")
                .expect("a call")
                .expect("found");
        assert_eq!(plain.params.explanation, Some(false));
        let early = call(
            "SELECT STREAM * FROM TABLE(RANDOM_CUT_FOREST_WITH_EXPLANATION(CURSOR(SELECT STREAM x FROM s), 100, true))",
        );
        assert!(early.expect_err("too early").to_string().contains("after all four numbers"));
    }

    #[test]
    fn bad_parameters_are_refused_where_they_are_written() {
        let error = call("SELECT STREAM * FROM TABLE(RANDOM_CUT_FOREST(CURSOR(SELECT STREAM * FROM s), 100, 5))")
            .expect_err("a sample of 5");
        assert_eq!(
            error.to_string(),
            "RANDOM_CUT_FOREST: subSampleSize must be between 10 and 1000, not 5. (line 1, column 83)"
        );
        let error = call("SELECT STREAM * FROM RANDOM_CUT_FOREST(s)").expect_err("no TABLE");
        assert!(error.to_string().contains("TABLE(RANDOM_CUT_FOREST(CURSOR("), "{error}");
        let error = call("SELECT STREAM * FROM TABLE(RANDOM_CUT_FOREST(CURSOR(SELECT STREAM * FROM s), 10, 'x'))")
            .expect_err("a string");
        assert!(error.to_string().contains("'x' is not a whole number"), "{error}");
    }
}

//! Finding `TABLE(HOTSPOTS(CURSOR(SELECT STREAM ...), windowSize, scanRadius,
//! minimumNumberOfPointsInAHotspot))` in a pump's query, with its arguments checked against the
//! limits the SQL reference gives (a window of 100 to 1,000 rows; a radius above 0; from 2 to
//! the window's rows in a hotspot).

use datafusion::sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan};

use crate::error::{AnalyticsError, Result};
use crate::hotspots::HotspotParams;
use crate::item_call;
use crate::table_call::{self, TableCall, split_arguments};

pub const FUNCTION: &str = "HOTSPOTS";

#[derive(Debug, Clone, PartialEq)]
pub struct HotspotCall {
    pub call: TableCall,
    pub params: HotspotParams,
}

/// The call in `tokens`, if there is one.
pub fn find(tokens: &[TokenWithSpan]) -> Result<Option<HotspotCall>> {
    let Some(call) = table_call::find(tokens, FUNCTION)? else { return Ok(None) };
    let arguments = split_arguments(&call)?;
    let [window, radius, minimum] = arguments.as_slice() else {
        return Err(AnalyticsError::code(
            call.at.line,
            call.at.column,
            "HOTSPOTS takes a cursor, then windowSize, scanRadius, minimumNumberOfPointsInAHotspot.",
        ));
    };
    let window_size = item_call::number(window, FUNCTION, "windowSize", 100, 1_000)?;
    let scan_radius = number(radius).filter(|r| r.is_finite() && *r > 0.0).ok_or_else(|| {
        refused(radius.span.start, format!("scanRadius must be a number above 0, not {}.", radius.token))
    })?;
    let minimum_points = item_call::number(minimum, FUNCTION, "minimumNumberOfPointsInAHotspot", 2, window_size)?;
    let params =
        HotspotParams { window_size: window_size as usize, scan_radius, minimum_points: minimum_points as usize };
    Ok(Some(HotspotCall { call, params }))
}

fn number(token: &TokenWithSpan) -> Option<f64> {
    match &token.token {
        Token::Number(text, _) => text.parse::<f64>().ok(),
        _ => None,
    }
}

fn refused(at: Location, message: String) -> AnalyticsError {
    AnalyticsError::code(at.line, at.column, format!("{FUNCTION}: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::tokenize;

    fn call(sql: &str) -> Result<Option<HotspotCall>> {
        find(&tokenize(sql).expect("as the test set it up"))
    }

    #[test]
    fn the_guide_example_gives_its_parameters() {
        let found = call(
            "SELECT \"x\", \"y\", \"HOTSPOTS_RESULT\" FROM TABLE (HOTSPOTS(CURSOR(SELECT STREAM \"x\", \"y\" FROM \"SOURCE_SQL_STREAM_001\"), 1000, 0.2, 17))",
        )
        .expect("a call")
        .expect("found");
        assert_eq!(found.params, HotspotParams { window_size: 1_000, scan_radius: 0.2, minimum_points: 17 });
        assert_eq!(call("SELECT STREAM * FROM s").expect("no call"), None);
    }

    #[test]
    fn arguments_out_of_their_limits_are_refused_where_they_are_written() {
        let error = call("SELECT STREAM * FROM TABLE(HOTSPOTS(CURSOR(SELECT STREAM * FROM s), 99, 0.2, 17))")
            .expect_err("a window of 99");
        assert_eq!(
            error.to_string(),
            "HOTSPOTS: windowSize must be a whole number from 100 to 1000, not 99. (line 1, column 69)"
        );
        let error = call("SELECT STREAM * FROM TABLE(HOTSPOTS(CURSOR(SELECT STREAM * FROM s), 100, 0, 17))")
            .expect_err("a radius of 0");
        assert!(error.to_string().contains("scanRadius must be a number above 0, not 0"), "{error}");
        let error = call("SELECT STREAM * FROM TABLE(HOTSPOTS(CURSOR(SELECT STREAM * FROM s), 100, 0.5, 101))")
            .expect_err("more points than the window");
        assert!(error.to_string().contains("from 2 to 100, not 101"), "{error}");
        let error = call("SELECT STREAM * FROM TABLE(HOTSPOTS(CURSOR(SELECT STREAM * FROM s), 100, 0.5))")
            .expect_err("two arguments");
        assert!(error.to_string().contains("windowSize, scanRadius"), "{error}");
    }
}

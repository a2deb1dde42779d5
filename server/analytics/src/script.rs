//! An application's code as statements: `CREATE OR REPLACE STREAM` (an in-application stream
//! and its columns) and `CREATE OR REPLACE PUMP ... AS INSERT INTO ... SELECT STREAM ...` (a
//! continuous query writing into a stream). Those are the only statements an application runs.

use datafusion::sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan};

use crate::dialect::{normalised, tokenize};
use crate::error::{AnalyticsError, Result};
use crate::sql_type::{SqlType, parse_sql_type};

#[derive(Debug, Clone, PartialEq)]
pub struct StreamDef {
    pub name: String,
    pub columns: Vec<(String, SqlType)>,
    pub at: Location,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PumpDef {
    pub name: String,
    pub target: String,
    /// `INSERT INTO s (a, b)`: the columns the query's values fill, in order.
    pub target_columns: Option<Vec<String>>,
    /// The `SELECT ...` tokens, whitespace included.
    pub query: Vec<TokenWithSpan>,
    pub at: Location,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Script {
    pub streams: Vec<StreamDef>,
    pub pumps: Vec<PumpDef>,
    /// Every token of the code (for errors that name an identifier).
    pub tokens: Vec<TokenWithSpan>,
}

/// Splits and reads the code's statements.
pub fn parse_script(code: &str) -> Result<Script> {
    let tokens = tokenize(code)?;
    let mut script = Script::default();
    let mut start = 0;
    for end in statement_ends(&tokens) {
        let statement = &tokens[start..end];
        start = end + 1;
        let mut cursor = Cursor::new(statement);
        let Some(first) = cursor.peek_location() else { continue };
        cursor.expect("CREATE")?;
        if cursor.accept("OR") {
            cursor.expect("REPLACE")?;
        }
        if cursor.accept("STREAM") {
            script.streams.push(stream(&mut cursor, first)?);
        } else if cursor.accept("PUMP") {
            script.pumps.push(pump(&mut cursor, first)?);
        } else {
            return Err(cursor.error("Expected STREAM or PUMP after CREATE OR REPLACE."));
        }
    }
    script.tokens = tokens;
    Ok(script)
}

/// Indexes of the `;` ending each statement (and the end of the code).
fn statement_ends(tokens: &[TokenWithSpan]) -> Vec<usize> {
    let mut ends: Vec<usize> =
        tokens.iter().enumerate().filter(|(_, t)| t.token == Token::SemiColon).map(|(i, _)| i).collect();
    ends.push(tokens.len());
    ends
}

fn stream(cursor: &mut Cursor, at: Location) -> Result<StreamDef> {
    let name = cursor.identifier()?;
    cursor.expect_token(&Token::LParen, "(")?;
    let mut columns = Vec::new();
    loop {
        let column_at = cursor.peek_location().unwrap_or(at);
        let column = cursor.identifier()?;
        let type_text = cursor.type_text();
        let sql_type = parse_sql_type(&type_text)
            .map_err(|e| AnalyticsError::code(column_at.line, column_at.column, e.to_string()))?;
        columns.push((column, sql_type));
        if cursor.accept_token(&Token::RParen) {
            break;
        }
        cursor.expect_token(&Token::Comma, ",")?;
    }
    if cursor.accept("DESCRIPTION") {
        cursor.next();
    }
    cursor.finish()?;
    Ok(StreamDef { name, columns, at })
}

fn pump(cursor: &mut Cursor, at: Location) -> Result<PumpDef> {
    let name = cursor.identifier()?;
    cursor.accept("STOPPED");
    cursor.expect("AS")?;
    cursor.expect("INSERT")?;
    cursor.expect("INTO")?;
    let target = cursor.identifier()?;
    let target_columns = if cursor.accept_token(&Token::LParen) {
        let mut names = vec![cursor.identifier()?];
        while cursor.accept_token(&Token::Comma) {
            names.push(cursor.identifier()?);
        }
        cursor.expect_token(&Token::RParen, ")")?;
        Some(names)
    } else {
        None
    };
    if !cursor.peek_is("SELECT") {
        return Err(cursor.error("Expected SELECT STREAM after INSERT INTO."));
    }
    Ok(PumpDef { name, target, target_columns, query: cursor.rest(), at })
}

/// Walks a statement's significant tokens.
struct Cursor<'a> {
    tokens: &'a [TokenWithSpan],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn new(tokens: &'a [TokenWithSpan]) -> Self {
        let mut cursor = Cursor { tokens, at: 0 };
        cursor.skip_blank();
        cursor
    }

    fn skip_blank(&mut self) {
        while self.tokens.get(self.at).is_some_and(|t| matches!(t.token, Token::Whitespace(_) | Token::EOF)) {
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<&'a TokenWithSpan> {
        self.tokens.get(self.at)
    }

    fn peek_location(&self) -> Option<Location> {
        self.peek().map(|t| t.span.start)
    }

    fn peek_is(&self, word: &str) -> bool {
        matches!(self.peek().map(|t| &t.token), Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
    }

    fn next(&mut self) -> Option<&'a TokenWithSpan> {
        let token = self.peek();
        self.at += 1;
        self.skip_blank();
        token
    }

    fn accept(&mut self, word: &str) -> bool {
        let found = self.peek_is(word);
        if found {
            self.next();
        }
        found
    }

    fn accept_token(&mut self, token: &Token) -> bool {
        let found = self.peek().is_some_and(|t| &t.token == token);
        if found {
            self.next();
        }
        found
    }

    fn expect(&mut self, word: &str) -> Result<()> {
        if self.accept(word) { Ok(()) } else { Err(self.error(&format!("Expected {word}."))) }
    }

    fn expect_token(&mut self, token: &Token, shown: &str) -> Result<()> {
        if self.accept_token(token) { Ok(()) } else { Err(self.error(&format!("Expected {shown}."))) }
    }

    fn identifier(&mut self) -> Result<String> {
        match self.peek().map(|t| &t.token) {
            Some(Token::Word(word)) => {
                let name = normalised(word);
                self.next();
                Ok(name)
            }
            _ => Err(self.error("Expected a name.")),
        }
    }

    /// A column's type: everything up to the `,` or `)` that ends the column, parentheses
    /// included (`DECIMAL(10, 2)`).
    fn type_text(&mut self) -> String {
        let mut text = String::new();
        let mut depth = 0;
        while let Some(token) = self.peek() {
            match token.token {
                Token::Comma | Token::RParen if depth == 0 => break,
                Token::LParen => depth += 1,
                Token::RParen => depth -= 1,
                _ => {}
            }
            if matches!(token.token, Token::Word(_)) && !text.is_empty() && !text.ends_with('(') {
                text.push(' ');
            }
            text.push_str(&token.token.to_string());
            self.next();
        }
        text
    }

    fn rest(&mut self) -> Vec<TokenWithSpan> {
        let rest = self.tokens[self.at..].to_vec();
        self.at = self.tokens.len();
        rest
    }

    fn finish(&mut self) -> Result<()> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.error("Expected the end of the statement.")),
        }
    }

    fn error(&self, message: &str) -> AnalyticsError {
        let at = self.peek().map(|t| t.span.start).or_else(|| self.tokens.last().map(|t| t.span.end));
        let at = at.unwrap_or(Location::new(1, 1));
        let found = self.peek().map_or("the end of the statement".to_string(), |t| t.token.to_string());
        AnalyticsError::code(at.line, at.column, format!("{message} Found {found}."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICKER: &str = r#"
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (ticker_symbol VARCHAR(4), sector VARCHAR(12), change DOUBLE, price DECIMAL(10, 2));
-- a pump
CREATE OR REPLACE PUMP "STREAM_PUMP" AS INSERT INTO "DESTINATION_SQL_STREAM"
    SELECT STREAM ticker_symbol, sector, change, price FROM "SOURCE_SQL_STREAM_001" WHERE sector SIMILAR TO '%TECH%';
"#;

    #[test]
    fn reads_streams_and_pumps() {
        let script = parse_script(TICKER).expect("as the test set it up");
        assert_eq!(script.streams.len(), 1);
        let stream = &script.streams[0];
        assert_eq!(stream.name, "DESTINATION_SQL_STREAM");
        let names: Vec<&str> = stream.columns.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["TICKER_SYMBOL", "SECTOR", "CHANGE", "PRICE"]);
        assert_eq!(stream.columns[3].1.name, "DECIMAL(10,2)");
        let pump = &script.pumps[0];
        assert_eq!((pump.name.as_str(), pump.target.as_str()), ("STREAM_PUMP", "DESTINATION_SQL_STREAM"));
        assert!(pump.query.iter().any(|t| t.token.to_string() == "SIMILAR"));
    }

    #[test]
    fn errors_name_the_line_and_column() {
        let code = "CREATE OR REPLACE STREAM s (a INTEGER);\nCREATE OR REPLACE TABLE t (a INTEGER);";
        match parse_script(code) {
            Err(AnalyticsError::Code { line, column, message }) => {
                assert_eq!((line, column), (2, 19));
                assert!(message.contains("STREAM or PUMP"), "{message}");
            }
            other => panic!("expected a code error, got {other:?}"),
        }
        match parse_script("CREATE OR REPLACE STREAM s (a GEOMETRY);") {
            Err(AnalyticsError::Code { line: 1, column: 29, message }) => assert!(message.contains("GEOMETRY")),
            other => panic!("expected a code error, got {other:?}"),
        }
    }

    #[test]
    fn a_pump_needs_its_select() {
        let code = "CREATE OR REPLACE PUMP p AS INSERT INTO s VALUES (1);";
        assert!(matches!(parse_script(code), Err(AnalyticsError::Code { line: 1, column: 43, .. })));
    }
}

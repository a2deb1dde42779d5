//! The part of Java's `DateTimeFormatter` patterns that Firehose prefixes use
//! (`!{timestamp:yyyy/MM/dd}`): year, month, day, hour, minute, second and milliseconds, text in
//! single quotes taken literally, other non-letters as they are. Times are UTC.

use crate::civil_date::civil_from_days;

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Literal(String),
    /// A field and how many pattern letters asked for it (the minimum width).
    Field(Field, usize),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Field {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    Millis,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TimestampPattern {
    tokens: Vec<Token>,
}

impl TimestampPattern {
    pub fn parse(pattern: &str) -> Result<TimestampPattern, String> {
        let mut tokens = Vec::new();
        let chars: Vec<char> = pattern.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == '\'' {
                let close = chars[i + 1..].iter().position(|&q| q == '\'').map(|p| p + i + 1);
                let Some(close) = close else {
                    return Err(format!("The timestamp pattern '{pattern}' has an unclosed quote."));
                };
                let text: String = if close == i + 1 { "'".into() } else { chars[i + 1..close].iter().collect() };
                tokens.push(Token::Literal(text));
                i = close + 1;
            } else if c.is_ascii_alphabetic() {
                let run = chars[i..].iter().take_while(|&&x| x == c).count();
                let field = match c {
                    'y' | 'u' => Field::Year,
                    'M' => Field::Month,
                    'd' => Field::Day,
                    'H' => Field::Hour,
                    'm' => Field::Minute,
                    's' => Field::Second,
                    'S' => Field::Millis,
                    _ => return Err(format!("The timestamp pattern '{pattern}' uses '{c}', which is not supported.")),
                };
                if field == Field::Month && run >= 3 {
                    return Err(format!(
                        "The timestamp pattern '{pattern}' asks for a month name, which is not supported."
                    ));
                }
                tokens.push(Token::Field(field, run));
                i += run;
            } else {
                tokens.push(Token::Literal(c.to_string()));
                i += 1;
            }
        }
        Ok(TimestampPattern { tokens })
    }

    /// The instant `ms` (Unix milliseconds) in this pattern, in UTC.
    pub fn format(&self, ms: u64) -> String {
        let seconds = ms / 1000;
        let (year, month, day) = civil_from_days((seconds / 86_400) as i64);
        let of_day = seconds % 86_400;
        let mut out = String::new();
        for token in &self.tokens {
            match token {
                Token::Literal(text) => out.push_str(text),
                Token::Field(Field::Year, 2) => out.push_str(&format!("{:02}", year.rem_euclid(100))),
                Token::Field(field, width) => {
                    let value = match field {
                        Field::Year => year,
                        Field::Month => i64::from(month),
                        Field::Day => i64::from(day),
                        Field::Hour => (of_day / 3600) as i64,
                        Field::Minute => (of_day / 60 % 60) as i64,
                        Field::Second => (of_day % 60) as i64,
                        Field::Millis => (ms % 1000) as i64,
                    };
                    out.push_str(&format!("{value:0width$}"));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_javas_formatter_in_utc() {
        // 2018-08-27T10:30:05.042Z
        let ms = 1_535_365_805_042;
        let format = |p: &str| TimestampPattern::parse(p).expect("valid").format(ms);
        assert_eq!(format("yyyy/MM/dd/HH/"), "2018/08/27/10/");
        assert_eq!(format("yy-M-d H:m:s.SSS"), "18-8-27 10:30:5.042");
        assert_eq!(format("'year='yyyy'/'''"), "year=2018/'");
        assert_eq!(format("uuuu-MM-dd'T'HH:mm:ss"), "2018-08-27T10:30:05");
    }

    #[test]
    fn unknown_letters_and_open_quotes_are_refused() {
        assert!(TimestampPattern::parse("yyyy-EEE").is_err());
        assert!(TimestampPattern::parse("yyyy'open").is_err());
        assert!(TimestampPattern::parse("MMM").is_err(), "month names are text");
    }
}

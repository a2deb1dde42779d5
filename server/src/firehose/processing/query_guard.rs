//! What a MetadataExtractionQuery may use. A query runs on every record inside the delivery task,
//! which cannot stop a query once it runs, so only filters whose work is bounded by the record
//! are allowed: paths, object and (a few) array constructions, comparisons, conditionals, and
//! named filters from a list that excludes jq's loops and generators (`range`, `repeat`,
//! `recurse`, `while`, `limit`, `def`, ...), regular expressions, string interpolation and `*`
//! (which repeats strings). Partition keys, as AWS's examples build them, need nothing more.

/// Named filters and keywords a query may use.
const ALLOWED: &[&str] = &[
    "if",
    "then",
    "elif",
    "else",
    "end",
    "and",
    "or",
    "not",
    "as",
    "null",
    "true",
    "false",
    "empty",
    "select",
    "length",
    "utf8bytelength",
    "keys",
    "keys_unsorted",
    "has",
    "in",
    "type",
    "tostring",
    "tonumber",
    "tojson",
    "fromjson",
    "ascii_downcase",
    "ascii_upcase",
    "ltrimstr",
    "rtrimstr",
    "trim",
    "ltrim",
    "rtrim",
    "startswith",
    "endswith",
    "split",
    "join",
    "strftime",
    "strptime",
    "mktime",
    "gmtime",
    "todate",
    "fromdate",
    "todateiso8601",
    "fromdateiso8601",
    "floor",
    "ceil",
    "round",
    "abs",
    "first",
    "last",
    "add",
    "min",
    "max",
    "sort",
    "unique",
    "reverse",
    "contains",
    "inside",
    "index",
    "rindex",
    "map",
    "map_values",
    "to_entries",
    "from_entries",
    "with_entries",
    "values",
    "tostream",
    "ascii",
    "explode",
    "implode",
    "del",
    "base64",
    "base64d",
    "text",
    "json",
    "uri",
    "csv",
    "tsv",
    "html",
    "sh",
];
/// Brackets may nest this deep: the parser recurses per level.
const MAX_NESTING: usize = 16;
/// Array constructions: each may multiply what flows through by the input's size, so a few only.
const MAX_ARRAY_CONSTRUCTIONS: usize = 4;

/// The model's bound on a processor parameter's value.
const MAX_QUERY_CHARS: usize = 5120;

/// `Ok` when the query uses only what is allowed, else the message of InvalidArgumentException.
pub fn check(query: &str) -> Result<(), String> {
    if query.chars().count() > MAX_QUERY_CHARS {
        return Err(format!("MetadataExtractionQuery is longer than {MAX_QUERY_CHARS} characters."));
    }
    let refuse = |what: String| {
        Err(format!("MetadataExtractionQuery {what}, which this server does not run in partition key queries."))
    };
    let bytes = query.as_bytes();
    let (mut at, mut depth, mut constructions) = (0, 0usize, 0usize);
    while at < bytes.len() {
        let c = bytes[at];
        match c {
            b'"' => at = skip_string(bytes, at).map_err(|what| format!("MetadataExtractionQuery {what}."))?,
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return refuse(format!("nests brackets deeper than {MAX_NESTING}"));
                }
                if c == b'[' && !follows_a_value(&query[..at]) {
                    constructions += 1;
                    if constructions > MAX_ARRAY_CONSTRUCTIONS {
                        return refuse(format!("builds more than {MAX_ARRAY_CONSTRUCTIONS} arrays"));
                    }
                }
                at += 1;
            }
            b')' | b']' | b'}' => {
                depth = depth.saturating_sub(1);
                at += 1;
            }
            b'*' | b'%' => return refuse(format!("uses {}", c as char)),
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = at;
                while at < bytes.len() && (bytes[at].is_ascii_alphanumeric() || bytes[at] == b'_') {
                    at += 1;
                }
                let word = &query[start..at];
                let before = query[..start].trim_end().as_bytes().last().copied();
                let is_key = query[at..].trim_start().starts_with(':');
                let is_member_or_variable = matches!(before, Some(b'.' | b'$'));
                if !is_key && !is_member_or_variable && !ALLOWED.contains(&word) {
                    return refuse(format!("uses {word}"));
                }
            }
            _ => at += 1,
        }
    }
    Ok(())
}

/// Where the string starting at `start` (a quote) ends; interpolation `\(...)` is refused.
fn skip_string(bytes: &[u8], start: usize) -> Result<usize, String> {
    let mut at = start + 1;
    while at < bytes.len() {
        match bytes[at] {
            b'\\' if bytes.get(at + 1) == Some(&b'(') => return Err("uses string interpolation".into()),
            b'\\' => at += 2,
            b'"' => return Ok(at + 1),
            _ => at += 1,
        }
    }
    Err("has a string that is not closed".into())
}

/// Whether `[` after `before` indexes a value (`.a[0]`, `.[]`, `f[1]`) rather than building an array.
fn follows_a_value(before: &str) -> bool {
    before
        .trim_end()
        .as_bytes()
        .last()
        .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b']' | b')' | b'_' | b'?' | b'"'))
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn what_aws_examples_use_passes() {
        for query in [
            r#"{customer_id: .customer_id, device: .type.device, year: .event_timestamp | strftime("%Y")}"#,
            r#"{k: [.a, .b] | join("-"), t: .tags[0], d: (.x // "none" | ascii_downcase)}"#,
            r#"{range: .range, s: "a \"quoted\" range \\ (not interpolated)", v: $__loc__.file}"#,
            r#"{n: (if .n > 5 then "big" else "small" end)}"#,
        ] {
            assert_eq!(check(query), Ok(()), "{query}");
        }
    }

    #[test]
    fn unbounded_work_is_refused() {
        for query in [
            "{k: [range(1e12)] | length}",
            r#"{k: "\([range(1e12)] | length)"}"#,
            r#"{k: "x" * 100000000000}"#,
            "{k: [1] | [.[],.[]] | [.[],.[]] | [.[],.[]] | [.[],.[]] | [.[],.[]] | length}",
            "{k: combinations(64)}",
            "{k: (.a | recurse)}",
            "def f: f; {k: f}",
            r#"{k: .a | test("(a+)+$")}"#,
            &format!("{{k: {}.a{}}}", "(".repeat(40), ")".repeat(40)),
            r#"{k: "open"#,
        ] {
            assert!(check(query).is_err(), "{query}");
        }
    }
}

//! `dataProcessingOptions`: each record (a line, or a multi-line record, with its newline)
//! through the Agent's converters in order. A record a converter cannot read is counted as
//! failed and not sent, as the Agent does.

use anyhow::bail;
use regex::Regex;
use serde_json::Value;

use super::agent_config::{LogFormat, ProcessingOption};

/// One configured converter, ready to run.
#[derive(Debug)]
pub enum Processor {
    SingleLine,
    CsvToJson { names: Vec<String>, delimiter: String },
    LogToJson { pattern: Regex, names: Vec<String> },
}

impl Processor {
    pub fn new(option: &ProcessingOption) -> anyhow::Result<Processor> {
        Ok(match option {
            ProcessingOption::Singleline => Processor::SingleLine,
            ProcessingOption::Csvtojson { custom_field_names, delimiter } => {
                if custom_field_names.is_empty() || delimiter.is_empty() {
                    bail!("CSVTOJSON needs customFieldNames and a delimiter");
                }
                Processor::CsvToJson { names: custom_field_names.clone(), delimiter: delimiter.clone() }
            }
            ProcessingOption::Logtojson { log_format, match_pattern, custom_field_names } => {
                let (default_pattern, default_names) = log_format_pattern(*log_format);
                let pattern = Regex::new(match_pattern.as_deref().unwrap_or(default_pattern))?;
                let names = if custom_field_names.is_empty() {
                    default_names.iter().map(|n| n.to_string()).collect()
                } else {
                    custom_field_names.clone()
                };
                if names.len() + 1 < pattern.captures_len() {
                    bail!("LOGTOJSON's pattern has more groups than field names");
                }
                Processor::LogToJson { pattern, names }
            }
            ProcessingOption::AddEc2Metadata {} => {
                bail!("ADDEC2METADATA needs the EC2 instance metadata service, which an edge device does not have")
            }
        })
    }

    /// The converted record, or `None` when it does not fit the converter.
    pub fn apply(&self, record: &[u8]) -> Option<Vec<u8>> {
        let text = std::str::from_utf8(record).ok()?;
        let body = text.strip_suffix('\n').unwrap_or(text);
        let out = match self {
            Processor::SingleLine => body.lines().map(str::trim).collect::<String>(),
            Processor::CsvToJson { names, delimiter } => {
                let values: Vec<&str> = body.split(delimiter.as_str()).collect();
                let fields = names.iter().enumerate().map(|(i, name)| (name.as_str(), values.get(i).copied()));
                json_object(fields)
            }
            Processor::LogToJson { pattern, names } => {
                let captures = pattern.captures(body)?;
                let fields =
                    names.iter().enumerate().map(|(i, name)| (name.as_str(), captures.get(i + 1).map(|m| m.as_str())));
                json_object(fields.filter(|(_, value)| value.is_some()))
            }
        };
        let mut out = out.into_bytes();
        out.push(b'\n');
        Some(out)
    }
}

/// A JSON object with its fields in the given order (a missing value is null).
fn json_object<'a>(fields: impl Iterator<Item = (&'a str, Option<&'a str>)>) -> String {
    let members: Vec<String> = fields
        .map(|(name, value)| {
            let value = value.map_or(Value::Null, |v| Value::String(v.to_string()));
            format!("{}:{}", Value::String(name.to_string()), value)
        })
        .collect();
    format!("{{{}}}", members.join(","))
}

/// The Agent's log formats: the pattern each line must match, and the fields of its groups.
fn log_format_pattern(format: LogFormat) -> (&'static str, &'static [&'static str]) {
    const COMMON: &str = r#"^(\S+) (\S+) (\S+) \[([^\]]+)\] "([^"]*)" (\S+) (\S+)"#;
    const COMMON_FIELDS: &[&str] = &["host", "ident", "authuser", "datetime", "request", "response", "bytes"];
    match format {
        LogFormat::Commonapachelog => (COMMON, COMMON_FIELDS),
        LogFormat::Combinedapachelog => (
            r#"^(\S+) (\S+) (\S+) \[([^\]]+)\] "([^"]*)" (\S+) (\S+) "([^"]*)" "([^"]*)""#,
            &["host", "ident", "authuser", "datetime", "request", "response", "bytes", "referrer", "agent"],
        ),
        LogFormat::Apacheerrorlog => (
            r"^\[([^\]]+)\] \[(?:([^:\]]+):)?([^\]]+)\](?: \[pid (\d+)(?::tid (\d+))?\])?(?: \[client ([^\]]+)\])? (.*)$",
            &["timestamp", "module", "severity", "processid", "threadid", "client", "message"],
        ),
        LogFormat::Syslog => (
            r"^(\w{3}\s+\d{1,2} \d{2}:\d{2}:\d{2}) (\S+) ([^:\[\s]+)(?:\[(\d+)\])?: (.*)$",
            &["timestamp", "hostname", "program", "processid", "message"],
        ),
        LogFormat::Rfc3339Syslog => (
            r"^(\d{4}-\d{2}-\d{2}T\S+) (\S+) ([^:\[\s]+)(?:\[(\d+)\])?: (.*)$",
            &["timestamp", "hostname", "program", "processid", "message"],
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn processor(json: &str) -> Processor {
        Processor::new(&serde_json::from_str(json).expect("an option")).expect("valid")
    }

    fn text(out: Option<Vec<u8>>) -> String {
        String::from_utf8(out.expect("converted")).expect("utf-8")
    }

    #[test]
    fn csv_lines_become_objects_in_field_order() {
        let csv =
            processor(r#"{"optionName": "CSVTOJSON", "customFieldNames": ["id", "name", "x"], "delimiter": "\t"}"#);
        assert_eq!(text(csv.apply(b"7\tcam one\n")), "{\"id\":\"7\",\"name\":\"cam one\",\"x\":null}\n");
    }

    #[test]
    fn apache_and_syslog_lines_become_objects() {
        let combined = processor(r#"{"optionName": "LOGTOJSON", "logFormat": "COMBINEDAPACHELOG"}"#);
        let line = b"10.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] \"GET /a.gif HTTP/1.0\" 200 2326 \"http://x/\" \"curl/8\"\n";
        let parsed: Value = serde_json::from_str(&text(combined.apply(line))).expect("json");
        assert_eq!(parsed["host"], "10.0.0.1");
        assert_eq!(parsed["request"], "GET /a.gif HTTP/1.0");
        assert_eq!(parsed["agent"], "curl/8");
        let syslog = processor(r#"{"optionName": "LOGTOJSON", "logFormat": "SYSLOG"}"#);
        let parsed: Value =
            serde_json::from_str(&text(syslog.apply(b"Mar  1 12:00:01 cam3 sshd[812]: accepted\n"))).expect("json");
        assert_eq!((parsed["program"].as_str(), parsed["processid"].as_str()), (Some("sshd"), Some("812")));
        assert!(syslog.apply(b"not a syslog line\n").is_none(), "a line that does not match fails");
        let error_log = processor(r#"{"optionName": "LOGTOJSON", "logFormat": "APACHEERRORLOG"}"#);
        let line = b"[Wed Oct 11 14:32:52 2000] [core:error] [pid 35708:tid 4328636416] [client 72.15.99.187] File does not exist\n";
        let parsed: Value = serde_json::from_str(&text(error_log.apply(line))).expect("json");
        assert_eq!((parsed["module"].as_str(), parsed["severity"].as_str()), (Some("core"), Some("error")));
        assert_eq!(parsed["message"], "File does not exist");
    }

    #[test]
    fn singleline_joins_a_multi_line_record() {
        let single = processor(r#"{"optionName": "SINGLELINE"}"#);
        assert_eq!(text(single.apply(b"Exception: x\n   at a()\n   at b()\n")), "Exception: xat a()at b()\n");
    }
}

//! PutMedia acknowledgements: one flat JSON object per line, in the exact shape AWS's producers
//! parse strictly: `EventType`, `FragmentTimecode` (a number), `FragmentNumber` (a string), and
//! for errors `ErrorId` (a number) and `ErrorCode` (docs/spec/kvs.md#putmedia-acks).

use serde::Deserialize;

use crate::ack_error::AckError;

/// One acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ack {
    Buffering { timecode: u64 },
    Received { timecode: u64 },
    Persisted { timecode: u64, fragment_number: String },
    Error { timecode: Option<u64>, error_id: u32, error_code: String },
    Idle,
}

/// A line that is not an acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unreadable acknowledgement {line:?}: {reason}")]
pub struct AckParseError {
    pub line: String,
    pub reason: String,
}

impl Ack {
    /// The ERROR ack for `error`.
    pub fn error(timecode: Option<u64>, error: AckError) -> Ack {
        Ack::Error { timecode, error_id: error.id(), error_code: error.code().to_string() }
    }

    /// The ack as the server sends it, newline included. Written by hand rather than serialised
    /// so that the field order is the one producers' strict parsers expect.
    pub fn line(&self) -> String {
        match self {
            Ack::Buffering { timecode } => format!("{{\"EventType\":\"BUFFERING\",\"FragmentTimecode\":{timecode}}}\n"),
            Ack::Received { timecode } => format!("{{\"EventType\":\"RECEIVED\",\"FragmentTimecode\":{timecode}}}\n"),
            Ack::Persisted { timecode, fragment_number } => format!(
                "{{\"EventType\":\"PERSISTED\",\"FragmentTimecode\":{timecode},\"FragmentNumber\":\"{fragment_number}\"}}\n"
            ),
            Ack::Idle => "{\"EventType\":\"IDLE\"}\n".to_string(),
            Ack::Error { timecode, error_id, error_code } => {
                let timecode = timecode.map(|t| format!("\"FragmentTimecode\":{t},")).unwrap_or_default();
                let code = serde_json::Value::String(error_code.clone());
                format!("{{\"EventType\":\"ERROR\",{timecode}\"ErrorId\":{error_id},\"ErrorCode\":{code}}}\n")
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireAck {
    event_type: String,
    fragment_timecode: Option<u64>,
    fragment_number: Option<String>,
    error_id: Option<u32>,
    error_code: Option<String>,
}

/// Splits an ack byte stream into lines (acks may arrive split across chunks, or several to one)
/// and parses each.
#[derive(Debug, Default)]
pub struct AckLines {
    partial: Vec<u8>,
}

impl AckLines {
    /// Feeds bytes; returns the acks completed by them. A line that is not an ack is an error.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Ack>, AckParseError> {
        self.partial.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let line = line.trim_ascii();
            if !line.is_empty() {
                out.push(parse(line)?);
            }
        }
        Ok(out)
    }

    /// The last line, when the stream ends without a newline after it.
    pub fn finish(&mut self) -> Result<Option<Ack>, AckParseError> {
        let line = std::mem::take(&mut self.partial);
        let line = line.trim_ascii();
        if line.is_empty() { Ok(None) } else { parse(line).map(Some) }
    }
}

fn parse(line: &[u8]) -> Result<Ack, AckParseError> {
    let failure = |reason: String| AckParseError { line: String::from_utf8_lossy(line).into_owned(), reason };
    let wire: WireAck = serde_json::from_slice(line).map_err(|e| failure(e.to_string()))?;
    let timecode =
        || wire.fragment_timecode.ok_or_else(|| failure(format!("{} without FragmentTimecode", wire.event_type)));
    Ok(match wire.event_type.as_str() {
        "BUFFERING" => Ack::Buffering { timecode: timecode()? },
        "RECEIVED" => Ack::Received { timecode: timecode()? },
        "PERSISTED" => Ack::Persisted {
            timecode: timecode()?,
            fragment_number: wire
                .fragment_number
                .clone()
                .ok_or_else(|| failure("PERSISTED without FragmentNumber".into()))?,
        },
        "ERROR" => Ack::Error {
            timecode: wire.fragment_timecode,
            error_id: wire.error_id.unwrap_or(0),
            error_code: wire.error_code.clone().unwrap_or_default(),
        },
        "IDLE" => Ack::Idle,
        other => return Err(failure(format!("unknown acknowledgement type {other}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_have_the_exact_shape_producers_parse() {
        let persisted = Ack::Persisted {
            timecode: 1663277247152,
            fragment_number: "91343852333181432511524306419788296366724229586".into(),
        };
        assert_eq!(
            persisted.line(),
            "{\"EventType\":\"PERSISTED\",\"FragmentTimecode\":1663277247152,\"FragmentNumber\":\"91343852333181432511524306419788296366724229586\"}\n"
        );
        let error = Ack::error(Some(5), AckError::TimecodeLesserThanPrevious);
        assert_eq!(
            error.line(),
            "{\"EventType\":\"ERROR\",\"FragmentTimecode\":5,\"ErrorId\":4004,\"ErrorCode\":\"FRAGMENT_TIMECODE_LESSER_THAN_PREVIOUS\"}\n"
        );
        for ack in [persisted, error, Ack::Idle, Ack::Buffering { timecode: 1 }] {
            assert!(ack.line().len() <= 1024, "the producer parser's segment limit");
        }
    }

    #[test]
    fn what_is_written_parses_back_whole_however_it_is_split() {
        let acks = vec![
            Ack::Buffering { timecode: 1 },
            Ack::Received { timecode: 1 },
            Ack::Persisted { timecode: 1, fragment_number: "9123".into() },
            Ack::Idle,
            Ack::error(None, AckError::Internal),
            Ack::error(Some(7), AckError::InvalidMkv),
        ];
        let bytes: String = acks.iter().map(Ack::line).collect();
        for split in 0..bytes.len() {
            let mut lines = AckLines::default();
            let mut parsed = lines.push(&bytes.as_bytes()[..split]).expect("valid");
            parsed.extend(lines.push(&bytes.as_bytes()[split..]).expect("valid"));
            assert_eq!(parsed, acks, "split at {split}");
            assert_eq!(lines.finish().expect("nothing left"), None);
        }
    }

    #[test]
    fn a_line_that_is_not_an_ack_is_an_error() {
        assert!(AckLines::default().push(b"<html>\n").is_err());
        assert!(AckLines::default().push(b"{\"EventType\":\"PERSISTED\",\"FragmentTimecode\":1}\n").is_err());
        assert!(AckLines::default().push(b"{\"EventType\":\"LOST\"}\n").is_err());
    }
}

//! Reading PutMedia acknowledgements: newline-separated JSON objects (spec §2) that may arrive
//! split across, or several to, one chunk.

use serde::Deserialize;

/// One acknowledgement, as the producer cares about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ack {
    Buffering { timecode: u64 },
    Received { timecode: u64 },
    Persisted { timecode: u64, fragment_number: String },
    Error { timecode: Option<u64>, error_id: u32, error_code: String },
    Idle,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Wire {
    event_type: String,
    fragment_timecode: Option<u64>,
    fragment_number: Option<String>,
    error_id: Option<u32>,
    error_code: Option<String>,
}

/// Splits the ack byte stream into lines and parses each.
#[derive(Debug, Default)]
pub struct AckLines {
    partial: Vec<u8>,
}

impl AckLines {
    /// Feeds bytes; returns the acks completed by them. Lines that are not acks are an error.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Ack>, String> {
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
    pub fn finish(&mut self) -> Result<Option<Ack>, String> {
        let line = std::mem::take(&mut self.partial);
        let line = line.trim_ascii();
        if line.is_empty() { Ok(None) } else { parse(line).map(Some) }
    }
}

fn parse(line: &[u8]) -> Result<Ack, String> {
    let wire: Wire = serde_json::from_slice(line)
        .map_err(|e| format!("unreadable acknowledgement {:?}: {e}", String::from_utf8_lossy(line)))?;
    let timecode = || wire.fragment_timecode.ok_or_else(|| format!("{} without FragmentTimecode", wire.event_type));
    Ok(match wire.event_type.as_str() {
        "BUFFERING" => Ack::Buffering { timecode: timecode()? },
        "RECEIVED" => Ack::Received { timecode: timecode()? },
        "PERSISTED" => Ack::Persisted {
            timecode: timecode()?,
            fragment_number: wire.fragment_number.ok_or("PERSISTED without FragmentNumber")?,
        },
        "ERROR" => Ack::Error {
            timecode: wire.fragment_timecode,
            error_id: wire.error_id.unwrap_or(0),
            error_code: wire.error_code.unwrap_or_default(),
        },
        "IDLE" => Ack::Idle,
        other => return Err(format!("unknown acknowledgement type {other}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_split_anywhere_parse_the_same() {
        let text = concat!(
            "{\"EventType\":\"BUFFERING\",\"FragmentTimecode\":10,\"FragmentNumber\":\"91\"}\n",
            "{\"EventType\":\"PERSISTED\",\"FragmentTimecode\":10,\"FragmentNumber\":\"91\"}\n",
            "{\"EventType\":\"IDLE\"}\n",
            "{\"EventType\":\"ERROR\",\"FragmentTimecode\":12,\"FragmentNumber\":\"92\",",
            "\"ErrorId\":4004,\"ErrorCode\":\"FRAGMENT_TIMECODE_LESSER_THAN_PREVIOUS\"}"
        );
        for split in 0..text.len() {
            let mut lines = AckLines::default();
            let mut acks = lines.push(&text.as_bytes()[..split]).expect("valid");
            acks.extend(lines.push(&text.as_bytes()[split..]).expect("valid"));
            acks.extend(lines.finish().expect("valid"));
            assert_eq!(acks.len(), 4, "split at {split}");
            assert_eq!(acks[1], Ack::Persisted { timecode: 10, fragment_number: "91".into() });
            assert_eq!(
                acks[3],
                Ack::Error {
                    timecode: Some(12),
                    error_id: 4004,
                    error_code: "FRAGMENT_TIMECODE_LESSER_THAN_PREVIOUS".into()
                }
            );
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(AckLines::default().push(b"<html>\n").is_err());
        assert!(AckLines::default().push(b"{\"EventType\":\"PERSISTED\"}\n").is_err());
    }
}

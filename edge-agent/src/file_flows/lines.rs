//! Cuts a file's bytes into records: lines (with their newline), or with
//! `multiLineStartPattern` a start line and the lines after it; `skipHeaderLines` dropped at the
//! start of a file; a record longer than the service takes cut short and ended with
//! `truncatedRecordTerminator`. Each record knows the file offset just past it, which becomes
//! the file's checkpoint once the record is acknowledged.

use regex::Regex;

/// A record and where it ends in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    pub data: Vec<u8>,
    pub end_offset: u64,
}

#[derive(Debug)]
pub struct Splitter {
    header_lines_left: usize,
    start_pattern: Option<Regex>,
    max_record_bytes: usize,
    terminator: Vec<u8>,
    /// The line being read, up to `max_record_bytes`; `overflowed` once it was longer.
    line: Vec<u8>,
    overflowed: bool,
    /// A multi-line record waiting for its next start line (or for the file to go quiet).
    pending: Option<RawRecord>,
    /// Where the line being read starts, and where the pending record starts.
    line_start: u64,
    pending_start: u64,
}

/// How a flow cuts records, the same for each of its files.
#[derive(Debug, Clone)]
pub struct Cutting {
    pub skip_header_lines: usize,
    pub start_pattern: Option<Regex>,
    pub max_record_bytes: usize,
    pub terminator: Vec<u8>,
}

impl Splitter {
    /// A splitter for a file read from `offset`: header lines are only skipped from the start.
    pub fn new(cutting: &Cutting, offset: u64) -> Splitter {
        Splitter {
            header_lines_left: if offset == 0 { cutting.skip_header_lines } else { 0 },
            start_pattern: cutting.start_pattern.clone(),
            max_record_bytes: cutting.max_record_bytes.max(cutting.terminator.len() + 1),
            terminator: cutting.terminator.clone(),
            line: Vec::new(),
            overflowed: false,
            pending: None,
            line_start: offset,
            pending_start: offset,
        }
    }

    /// The file offset of the first byte not cut into a record yet: where a copy of the file
    /// carries on.
    pub fn uncut_from(&self) -> u64 {
        if self.pending.is_some() { self.pending_start } else { self.line_start }
    }

    /// Cuts `bytes`, which end at file offset `end_offset`, appending finished records to `out`.
    pub fn push(&mut self, bytes: &[u8], end_offset: u64, out: &mut Vec<RawRecord>) {
        let start_offset = end_offset - bytes.len() as u64;
        let mut rest = bytes;
        let mut consumed = 0u64;
        while let Some(newline) = rest.iter().position(|&b| b == b'\n') {
            self.take(&rest[..=newline]);
            consumed += newline as u64 + 1;
            let line = self.finish_line();
            let line_start = std::mem::replace(&mut self.line_start, start_offset + consumed);
            self.line_done(line, line_start, start_offset + consumed, out);
            rest = &rest[newline + 1..];
        }
        self.take(rest);
    }

    /// The multi-line record held back for its next start line, once the file went quiet.
    pub fn flush(&mut self, out: &mut Vec<RawRecord>) {
        out.extend(self.pending.take());
    }

    /// Adds bytes of the current line, keeping at most `max_record_bytes`.
    fn take(&mut self, bytes: &[u8]) {
        let room = self.max_record_bytes.saturating_sub(self.line.len());
        self.line.extend_from_slice(&bytes[..bytes.len().min(room)]);
        self.overflowed |= bytes.len() > room;
    }

    /// The finished line, cut and terminated if it was too long.
    fn finish_line(&mut self) -> Vec<u8> {
        let mut line = std::mem::take(&mut self.line);
        if std::mem::take(&mut self.overflowed) {
            line.truncate(self.max_record_bytes - self.terminator.len());
            line.extend_from_slice(&self.terminator);
        }
        line
    }

    fn line_done(&mut self, line: Vec<u8>, line_start: u64, end_offset: u64, out: &mut Vec<RawRecord>) {
        if self.header_lines_left > 0 {
            self.header_lines_left -= 1;
            return;
        }
        let Some(pattern) = &self.start_pattern else {
            out.push(RawRecord { data: line, end_offset });
            return;
        };
        let starts = std::str::from_utf8(&line).is_ok_and(|text| pattern.is_match(text.trim_end_matches('\n')));
        match (&mut self.pending, starts) {
            (Some(pending), false) => {
                let room = self.max_record_bytes.saturating_sub(pending.data.len());
                pending.data.extend_from_slice(&line[..line.len().min(room)]);
                pending.end_offset = end_offset;
            }
            // A continuation line before any start line is a record of its own, as nothing
            // could be its start any more.
            (None, false) => out.push(RawRecord { data: line, end_offset }),
            (pending, true) => {
                out.extend(pending.replace(RawRecord { data: line, end_offset }));
                self.pending_start = line_start;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cutting(skip: usize, pattern: Option<&str>, max: usize) -> Cutting {
        Cutting {
            skip_header_lines: skip,
            start_pattern: pattern.map(|p| Regex::new(p).expect("pattern")),
            max_record_bytes: max,
            terminator: b"~\n".to_vec(),
        }
    }

    fn cut(splitter: &mut Splitter, chunks: &[&[u8]]) -> Vec<(String, u64)> {
        let (mut out, mut offset) = (Vec::new(), 0u64);
        for chunk in chunks {
            offset += chunk.len() as u64;
            splitter.push(chunk, offset, &mut out);
        }
        splitter.flush(&mut out);
        out.into_iter().map(|r| (String::from_utf8(r.data).expect("utf-8"), r.end_offset)).collect()
    }

    #[test]
    fn lines_split_across_reads_keep_their_newlines_and_end_offsets() {
        let mut splitter = Splitter::new(&cutting(1, None, 100), 0);
        let records = cut(&mut splitter, &[b"head\nfir", b"st\nsecond\npart"]);
        assert_eq!(records, vec![("first\n".into(), 11), ("second\n".into(), 18)], "the unfinished line waits");
        assert_eq!(splitter.uncut_from(), 18, "a copy carries on at the unfinished line");
    }

    #[test]
    fn headers_are_skipped_only_from_the_start_of_a_file() {
        let mut splitter = Splitter::new(&cutting(2, None, 100), 40);
        assert_eq!(cut(&mut splitter, &[b"a\n"]).len(), 1);
    }

    #[test]
    fn multi_line_records_run_to_the_next_start_line() {
        let mut splitter = Splitter::new(&cutting(0, Some(r"^\d{4}-"), 100), 0);
        let records = cut(&mut splitter, &[b"2026-01 boom\n  at a\n  at b\n2026-02 ok\n"]);
        assert_eq!(records, vec![("2026-01 boom\n  at a\n  at b\n".into(), 27), ("2026-02 ok\n".into(), 38)]);
        let mut splitter = Splitter::new(&cutting(0, Some(r"^\d{4}-"), 100), 0);
        let mut out = Vec::new();
        splitter.push(b"2026-01 a\n  b\n2026-02 c\n  d\n", 28, &mut out);
        assert_eq!(splitter.uncut_from(), 14, "the pending record starts at its start line");
    }

    #[test]
    fn long_lines_are_cut_and_end_with_the_terminator() {
        let mut splitter = Splitter::new(&cutting(0, None, 8), 0);
        let records = cut(&mut splitter, &[b"0123456789abc", b"def\nok\n"]);
        assert_eq!(records, vec![("012345~\n".into(), 17), ("ok\n".into(), 20)]);
    }
}

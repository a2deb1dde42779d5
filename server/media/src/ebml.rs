//! EBML primitives (RFC 8794): variable-length integers for element ids and sizes, element
//! headers, and the element writer used to produce Matroska.

/// The all-ones size value: an element whose end is only known when something else starts.
pub const UNKNOWN_SIZE: u64 = u64::MAX;

/// An element header: id (with its length marker, as Matroska tables list ids), data size
/// (`UNKNOWN_SIZE` when unknown) and the header's own length in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub id: u32,
    pub size: u64,
    pub header_len: usize,
}

/// Outcome of reading from a buffer that may end too early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read<T> {
    Done(T),
    /// More bytes are needed; this is not an error for a streaming reader.
    NeedMore,
    /// The bytes cannot be EBML.
    Invalid,
}

/// Reads an element id (1 to 4 bytes, marker bit kept).
pub fn read_id(buf: &[u8]) -> Read<(u32, usize)> {
    let Some(&first) = buf.first() else { return Read::NeedMore };
    let len = first.leading_zeros() as usize + 1;
    if len > 4 {
        return Read::Invalid;
    }
    if buf.len() < len {
        return Read::NeedMore;
    }
    let id = buf[..len].iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
    Read::Done((id, len))
}

/// Reads a data size (1 to 8 bytes, marker bit removed); all ones means unknown.
pub fn read_size(buf: &[u8]) -> Read<(u64, usize)> {
    let Some(&first) = buf.first() else { return Read::NeedMore };
    if first == 0 {
        return Read::Invalid;
    }
    let len = first.leading_zeros() as usize + 1;
    if buf.len() < len {
        return Read::NeedMore;
    }
    let mask = if len == 8 { 0 } else { 0xFFu8 >> len };
    let mut value = u64::from(first & mask);
    let mut all_ones = (first & mask) == mask;
    for &b in &buf[1..len] {
        value = (value << 8) | u64::from(b);
        all_ones &= b == 0xFF;
    }
    Read::Done((if all_ones { UNKNOWN_SIZE } else { value }, len))
}

pub fn read_header(buf: &[u8]) -> Read<Header> {
    let (id, id_len) = match read_id(buf) {
        Read::Done(v) => v,
        Read::NeedMore => return Read::NeedMore,
        Read::Invalid => return Read::Invalid,
    };
    match read_size(&buf[id_len..]) {
        Read::Done((size, size_len)) => Read::Done(Header { id, size, header_len: id_len + size_len }),
        Read::NeedMore => Read::NeedMore,
        Read::Invalid => Read::Invalid,
    }
}

/// Big-endian unsigned integer element payload (0 to 8 bytes).
pub fn read_uint(data: &[u8]) -> Option<u64> {
    (data.len() <= 8).then(|| data.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

/// Float element payload (4 or 8 bytes; empty means 0).
pub fn read_float(data: &[u8]) -> Option<f64> {
    match data.len() {
        0 => Some(0.0),
        4 => Some(f64::from(f32::from_be_bytes(data.try_into().ok()?))),
        8 => Some(f64::from_be_bytes(data.try_into().ok()?)),
        _ => None,
    }
}

/// Writes an id as its stored bytes (the marker is part of Matroska ids).
pub fn write_id(out: &mut Vec<u8>, id: u32) {
    let bytes = id.to_be_bytes();
    let skip = (id.leading_zeros() / 8) as usize;
    out.extend_from_slice(&bytes[skip.min(3)..]);
}

/// Writes a size in the shortest form, or as 8 bytes when `fixed8` (so it can be patched later).
pub fn write_size(out: &mut Vec<u8>, size: u64, fixed8: bool) {
    if size == UNKNOWN_SIZE {
        out.push(0x01);
        out.extend_from_slice(&[0xFF; 7]);
        return;
    }
    let len = if fixed8 { 8 } else { (1..=8).find(|&n| size < (1u64 << (7 * n)) - 1).unwrap_or(8) };
    let marked = size | (1u64 << (7 * len));
    out.extend_from_slice(&marked.to_be_bytes()[8 - len..]);
}

/// Writes a whole element whose payload `body` produces; the size is known once it has run.
pub fn write_element(out: &mut Vec<u8>, id: u32, body: impl FnOnce(&mut Vec<u8>)) {
    write_id(out, id);
    let size_at = out.len();
    write_size(out, 0, true);
    let start = out.len();
    body(out);
    let size = (out.len() - start) as u64;
    let mut patched = Vec::with_capacity(8);
    write_size(&mut patched, size, true);
    out[size_at..size_at + 8].copy_from_slice(&patched);
}

pub fn write_uint(out: &mut Vec<u8>, id: u32, value: u64) {
    let len = (8 - value.leading_zeros() as usize / 8).max(1);
    write_id(out, id);
    write_size(out, len as u64, false);
    out.extend_from_slice(&value.to_be_bytes()[8 - len..]);
}

pub fn write_bytes(out: &mut Vec<u8>, id: u32, value: &[u8]) {
    write_id(out, id);
    write_size(out, value.len() as u64, false);
    out.extend_from_slice(value);
}

pub fn write_float(out: &mut Vec<u8>, id: u32, value: f64) {
    write_id(out, id);
    write_size(out, 8, false);
    out.extend_from_slice(&value.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn matroska_ids_and_sizes_read_as_the_spec_writes_them() {
        assert_eq!(read_id(&[0x1A, 0x45, 0xDF, 0xA3]), Read::Done((0x1A45DFA3, 4)));
        assert_eq!(read_id(&[0xA3]), Read::Done((0xA3, 1)));
        assert_eq!(read_size(&[0x81]), Read::Done((1, 1)));
        assert_eq!(read_size(&[0x40, 0x02]), Read::Done((2, 2)));
        assert_eq!(read_size(&[0xFF]), Read::Done((UNKNOWN_SIZE, 1)));
        assert_eq!(read_size(&[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]), Read::Done((UNKNOWN_SIZE, 8)));
        assert_eq!(read_size(&[0x00]), Read::Invalid);
        assert_eq!(read_size(&[0x40]), Read::NeedMore);
        assert_eq!(read_id(&[0x08]), Read::Invalid);
    }

    #[test]
    fn elements_are_written_with_patched_eight_byte_sizes() {
        let mut out = Vec::new();
        write_element(&mut out, 0x1F43B675, |b| write_uint(b, 0xE7, 300));
        assert_eq!(out, [0x1F, 0x43, 0xB6, 0x75, 0x01, 0, 0, 0, 0, 0, 0, 4, 0xE7, 0x82, 0x01, 0x2C]);
        let header = match read_header(&out) {
            Read::Done(h) => h,
            other => panic!("expected a header, got {other:?}"),
        };
        assert_eq!(header, Header { id: 0x1F43B675, size: 4, header_len: 12 });
    }

    proptest! {
        #[test]
        fn sizes_round_trip(size in 0u64..(1u64 << 56) - 1, fixed in any::<bool>()) {
            let mut out = Vec::new();
            write_size(&mut out, size, fixed);
            prop_assert_eq!(read_size(&out), Read::Done((size, out.len())));
            for cut in 0..out.len() {
                prop_assert_eq!(read_size(&out[..cut]), Read::NeedMore);
            }
        }

        #[test]
        fn uints_round_trip(value in any::<u64>()) {
            let mut out = Vec::new();
            write_uint(&mut out, 0xE7, value);
            let Read::Done(header) = read_header(&out) else { panic!("header") };
            prop_assert_eq!(read_uint(&out[header.header_len..]), Some(value));
        }
    }
}

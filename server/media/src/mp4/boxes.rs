//! ISO BMFF (ISO/IEC 14496-12) boxes needed to ingest fragmented MP4: the init segment's track
//! descriptions (moov/trak/.../stsd, mvex/trex) and each fragment's sample table (moof/traf:
//! tfhd, tfdt, trun). Everything here reads a fully buffered box payload.

use crate::error::MediaError;

/// A box found inside a payload: its four-character type, payload and absolute payload offset.
pub type Found<'a> = ([u8; 4], &'a [u8], u64);

/// Reads a box header: (type, header length, total size); `None` when more bytes are needed.
pub fn header(buf: &[u8], offset: u64) -> Result<Option<([u8; 4], usize, u64)>, MediaError> {
    if buf.len() < 8 {
        return Ok(None);
    }
    let size32 = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let kind = [buf[4], buf[5], buf[6], buf[7]];
    let (header_len, size) = match size32 {
        1 => {
            if buf.len() < 16 {
                return Ok(None);
            }
            let mut wide = [0u8; 8];
            wide.copy_from_slice(&buf[8..16]);
            (16, u64::from_be_bytes(wide))
        }
        // Size 0 ("to the end of the file") cannot be honoured in a stream without an end.
        0 => return Err(malformed(offset, &kind, "box size 0 is not allowed in a stream")),
        n => (8, u64::from(n)),
    };
    if size < header_len as u64 {
        return Err(malformed(offset, &kind, "box smaller than its header"));
    }
    Ok(Some((kind, header_len, size)))
}

pub fn malformed(offset: u64, kind: &[u8; 4], reason: &'static str) -> MediaError {
    MediaError::Malformed { offset, path: String::from_utf8_lossy(kind).into_owned(), reason }
}

/// The child boxes of a buffered payload.
pub fn children(data: &[u8], base: u64) -> Result<Vec<Found<'_>>, MediaError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < data.len() {
        let offset = base + at as u64;
        let Some((kind, header_len, size)) = header(&data[at..], offset)? else {
            return Err(MediaError::Malformed { offset, path: "box".into(), reason: "truncated box header" });
        };
        let end = usize::try_from(size).ok().and_then(|s| at.checked_add(s)).filter(|&end| end <= data.len());
        let Some(end) = end else { return Err(malformed(offset, &kind, "box overruns its parent")) };
        out.push((kind, &data[at + header_len..end], base + (at + header_len) as u64));
        at = end;
    }
    Ok(out)
}

pub fn child<'a>(data: &'a [u8], base: u64, kind: &[u8; 4]) -> Result<Option<Found<'a>>, MediaError> {
    Ok(children(data, base)?.into_iter().find(|(k, _, _)| k == kind))
}

/// A cursor over a box payload with typed big-endian reads.
pub struct Cursor<'a> {
    pub data: &'a [u8],
    pub at: usize,
    pub base: u64,
    pub kind: [u8; 4],
}

impl<'a> Cursor<'a> {
    pub fn new(data: &'a [u8], base: u64, kind: [u8; 4]) -> Self {
        Self { data, at: 0, base, kind }
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], MediaError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.data.len());
        let Some(end) = end else { return Err(malformed(self.base + self.at as u64, &self.kind, "payload too short")) };
        let out = &self.data[self.at..end];
        self.at = end;
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, MediaError> {
        Ok(self.take(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16, MediaError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self) -> Result<u32, MediaError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self) -> Result<u64, MediaError> {
        let b = self.take(8)?;
        let mut wide = [0u8; 8];
        wide.copy_from_slice(b);
        Ok(u64::from_be_bytes(wide))
    }

    /// A full box's version and flags.
    pub fn version_flags(&mut self) -> Result<(u8, u32), MediaError> {
        let word = self.u32()?;
        Ok(((word >> 24) as u8, word & 0x00FF_FFFF))
    }

    pub fn rest(&self) -> &'a [u8] {
        &self.data[self.at..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_read_compact_and_large_sizes() {
        let compact = [0, 0, 0, 16, b'f', b't', b'y', b'p'];
        assert_eq!(header(&compact, 0).expect("valid"), Some((*b"ftyp", 8, 16)));
        let mut large = vec![0, 0, 0, 1, b'm', b'd', b'a', b't'];
        large.extend_from_slice(&(1u64 << 33).to_be_bytes());
        assert_eq!(header(&large, 0).expect("valid"), Some((*b"mdat", 16, 1 << 33)));
        assert_eq!(header(&large[..12], 0).expect("needs more"), None);
        assert!(header(&[0, 0, 0, 0, b'm', b'd', b'a', b't'], 0).is_err());
        assert!(header(&[0, 0, 0, 4, b'f', b'r', b'e', b'e'], 0).is_err());
    }
}

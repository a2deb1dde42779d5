//! Writing ISO BMFF boxes: a size-prefixed box whose body is written by a closure, and full boxes
//! (version and flags first). Sizes are patched in after the body, so nesting is free.

pub fn write_box(out: &mut Vec<u8>, kind: &[u8; 4], body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(kind);
    body(out);
    let size = u32::try_from(out.len() - start).unwrap_or(u32::MAX);
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

pub fn write_full_box(out: &mut Vec<u8>, kind: &[u8; 4], version: u8, flags: u32, body: impl FnOnce(&mut Vec<u8>)) {
    write_box(out, kind, |b| {
        b.push(version);
        b.extend_from_slice(&flags.to_be_bytes()[1..]);
        body(b);
    });
}

pub fn u16_be(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_be_bytes());
}

pub fn u32_be(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_be_bytes());
}

pub fn u64_be(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_be_bytes());
}

/// The identity transformation matrix of tkhd/mvhd.
pub fn unity_matrix(out: &mut Vec<u8>) {
    for value in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
        u32_be(out, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_boxes_carry_their_sizes() {
        let mut out = Vec::new();
        write_box(&mut out, b"moof", |m| write_full_box(m, b"mfhd", 0, 0, |b| u32_be(b, 7)));
        assert_eq!(out.len(), 24);
        assert_eq!(&out[..8], &[0, 0, 0, 24, b'm', b'o', b'o', b'f']);
        assert_eq!(&out[8..16], &[0, 0, 0, 16, b'm', b'f', b'h', b'd']);
        assert_eq!(&out[16..], &[0, 0, 0, 0, 0, 0, 0, 7]);
    }
}

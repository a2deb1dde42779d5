//! The decode worker's pipe protocol: one job in, one answer out, each a length-prefixed message
//! of little-endian fields. The server reads what a worker writes, and a worker that decoded
//! hostile media may be corrupted, so the reading side checks every length against what is left
//! and never trusts a count to size an allocation.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use framelog_media::package::Codec;

use crate::Picture;
use crate::decode::{EncodedFrame, FrameRequest};
use crate::encode::ImageFormat;
use crate::error::ImagingError;
use crate::job::{PictureJob, Pictures};

/// Largest message either side sends: a stored fragment is at most 50 MB, and RGB pictures of the
/// biggest accepted resolution stay well below this.
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// Writes one message: its length, then its bytes.
pub fn write_message(out: &mut impl Write, message: &[u8]) -> std::io::Result<()> {
    let length = u32::try_from(message.len())
        .ok()
        .filter(|&n| n as usize <= MAX_MESSAGE_BYTES)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "message too large"))?;
    out.write_all(&length.to_le_bytes())?;
    out.write_all(message)?;
    out.flush()
}

/// Reads one message; `Ok(None)` at a clean end of input (the other side closed the pipe).
pub fn read_message(input: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut length = [0u8; 4];
    match input.read_exact(&mut length) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    }
    let length = u32::from_le_bytes(length) as usize;
    if length > MAX_MESSAGE_BYTES {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "message too large"));
    }
    let mut message = Vec::new();
    input.take(length as u64).read_to_end(&mut message)?;
    if message.len() != length {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "message cut short"));
    }
    Ok(Some(message))
}

pub fn encode_job(job: &PictureJob) -> Vec<u8> {
    let mut out = Writer::default();
    let request = &job.request;
    write_codec(&mut out, request.codec);
    out.bytes(&request.config);
    out.u32(request.frames.len() as u32);
    for frame in &request.frames {
        out.i64(frame.pts_ms);
        out.u8(u8::from(frame.keyframe));
        out.bytes(&frame.data);
    }
    out.u32(request.wanted_pts_ms.len() as u32);
    request.wanted_pts_ms.iter().for_each(|&pts| out.i64(pts));
    out.option(request.scale_to, |out, (w, h)| {
        out.u32(w);
        out.u32(h);
    });
    out.option(request.jpeg_quality, Writer::u8);
    match job.format {
        ImageFormat::Png => out.u8(0),
        ImageFormat::Jpeg { quality } => {
            out.u8(1);
            out.u8(quality);
        }
    }
    out.option(job.width, Writer::u32);
    out.option(job.height, Writer::u32);
    out.0
}

pub fn decode_job(message: &[u8]) -> Result<PictureJob, ImagingError> {
    let mut input = Reader(message);
    let codec = read_codec(&mut input)?;
    let config = input.bytes()?.to_vec();
    let mut frames = Vec::new();
    for _ in 0..input.u32()? {
        let pts_ms = input.i64()?;
        let keyframe = input.u8()? != 0;
        frames.push(EncodedFrame { pts_ms, keyframe, data: input.bytes()?.to_vec() });
    }
    let mut wanted_pts_ms = Vec::new();
    for _ in 0..input.u32()? {
        wanted_pts_ms.push(input.i64()?);
    }
    let scale_to = input.option(|input| Ok((input.u32()?, input.u32()?)))?;
    let jpeg_quality = input.option(Reader::u8)?;
    let format = match input.u8()? {
        0 => ImageFormat::Png,
        1 => ImageFormat::Jpeg { quality: input.u8()? },
        other => return Err(malformed(&format!("image format {other}"))),
    };
    let width = input.option(Reader::u32)?;
    let height = input.option(Reader::u32)?;
    input.end()?;
    let request = FrameRequest { codec, config, frames, wanted_pts_ms, scale_to, jpeg_quality };
    Ok(PictureJob { request, format, width, height })
}

pub fn encode_answer(answer: &Pictures) -> Vec<u8> {
    let mut out = Writer::default();
    out.u32(answer.pictures.len() as u32);
    for (&pts, picture) in &answer.pictures {
        out.i64(pts);
        out.u32(picture.width);
        out.u32(picture.height);
        out.bytes(&picture.bytes);
    }
    out.option(answer.failure.as_ref(), write_error);
    out.0
}

pub(crate) fn write_codec(out: &mut Writer, codec: Codec) {
    out.u8(match codec {
        Codec::Avc => 0,
        Codec::Hevc => 1,
        Codec::Aac => 2,
    });
}

pub(crate) fn read_codec(input: &mut Reader<'_>) -> Result<Codec, ImagingError> {
    match input.u8()? {
        0 => Ok(Codec::Avc),
        1 => Ok(Codec::Hevc),
        2 => Ok(Codec::Aac),
        other => Err(malformed(&format!("codec {other}"))),
    }
}

/// An error as its kind and text.
pub(crate) fn write_error(out: &mut Writer, failure: &ImagingError) {
    let (kind, text) = match failure {
        ImagingError::Unavailable(text) => (0, text.as_str()),
        ImagingError::Decode(text) => (1, text.as_str()),
        ImagingError::Encode(text) => (2, text.as_str()),
        ImagingError::Busy => (3, ""),
        ImagingError::WorkerFailed(text) => (4, text.as_str()),
    };
    out.u8(kind);
    out.bytes(text.as_bytes());
}

pub(crate) fn read_error(input: &mut Reader<'_>) -> Result<ImagingError, ImagingError> {
    let kind = input.u8()?;
    let text = String::from_utf8_lossy(input.bytes()?).into_owned();
    Ok(match kind {
        0 => ImagingError::Unavailable(text),
        1 => ImagingError::Decode(text),
        2 => ImagingError::Encode(text),
        3 => ImagingError::Busy,
        _ => ImagingError::WorkerFailed(text),
    })
}

pub fn decode_answer(message: &[u8]) -> Result<Pictures, ImagingError> {
    let mut input = Reader(message);
    let mut pictures = BTreeMap::new();
    for _ in 0..input.u32()? {
        let pts = input.i64()?;
        let (width, height) = (input.u32()?, input.u32()?);
        pictures.insert(pts, Picture { bytes: input.bytes()?.to_vec(), width, height });
    }
    let failure = input.option(read_error)?;
    input.end()?;
    Ok(Pictures { pictures, failure })
}

pub(crate) fn malformed(what: &str) -> ImagingError {
    ImagingError::WorkerFailed(format!("malformed decode worker message: {what}"))
}

#[derive(Default)]
pub(crate) struct Writer(pub(crate) Vec<u8>);

impl Writer {
    pub(crate) fn u8(&mut self, value: u8) {
        self.0.push(value);
    }
    pub(crate) fn u32(&mut self, value: u32) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }
    pub(crate) fn i64(&mut self, value: i64) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }
    pub(crate) fn bytes(&mut self, value: &[u8]) {
        self.u32(value.len() as u32);
        self.0.extend_from_slice(value);
    }
    pub(crate) fn option<T>(&mut self, value: Option<T>, write: impl FnOnce(&mut Writer, T)) {
        match value {
            None => self.u8(0),
            Some(value) => {
                self.u8(1);
                write(self, value);
            }
        }
    }
}

pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], ImagingError> {
        if self.0.len() < n {
            return Err(malformed("cut short"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, ImagingError> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u32(&mut self) -> Result<u32, ImagingError> {
        let bytes = self.take(4)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }
    pub(crate) fn i64(&mut self) -> Result<i64, ImagingError> {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(self.take(8)?);
        Ok(i64::from_le_bytes(bytes))
    }
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], ImagingError> {
        let length = self.u32()? as usize;
        self.take(length)
    }
    pub(crate) fn option<T>(
        &mut self,
        read: impl FnOnce(&mut Reader<'a>) -> Result<T, ImagingError>,
    ) -> Result<Option<T>, ImagingError> {
        match self.u8()? {
            0 => Ok(None),
            1 => read(self).map(Some),
            other => Err(malformed(&format!("option flag {other}"))),
        }
    }
    pub(crate) fn end(&self) -> Result<(), ImagingError> {
        if self.0.is_empty() { Ok(()) } else { Err(malformed("trailing bytes")) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_job() -> PictureJob {
        let frames = vec![
            EncodedFrame { pts_ms: -40, keyframe: true, data: vec![0, 0, 0, 2, 0x65, 0x88] },
            EncodedFrame { pts_ms: 0, keyframe: false, data: vec![] },
        ];
        let request = FrameRequest {
            codec: Codec::Hevc,
            config: vec![1, 2, 3],
            frames,
            wanted_pts_ms: vec![0, i64::MAX],
            scale_to: Some((640, 360)),
            jpeg_quality: None,
        };
        PictureJob { request, format: ImageFormat::Jpeg { quality: 80 }, width: Some(640), height: None }
    }

    #[test]
    fn a_job_survives_the_round_trip() {
        let job = sample_job();
        let back = decode_job(&encode_job(&job)).expect("decodes");
        assert_eq!(back.request.codec, Codec::Hevc);
        assert_eq!(back.request.config, job.request.config);
        let frames: Vec<_> = back.request.frames.iter().map(|f| (f.pts_ms, f.keyframe, f.data.clone())).collect();
        assert_eq!(frames, [(-40, true, vec![0, 0, 0, 2, 0x65, 0x88]), (0, false, vec![])]);
        assert_eq!(back.request.wanted_pts_ms, [0, i64::MAX]);
        assert_eq!((back.request.scale_to, back.request.jpeg_quality), (Some((640, 360)), None));
        assert_eq!((back.format, back.width, back.height), (ImageFormat::Jpeg { quality: 80 }, Some(640), None));
    }

    #[test]
    fn an_answer_survives_the_round_trip() {
        let mut pictures = BTreeMap::new();
        pictures.insert(7, Picture { bytes: vec![0xFF, 0xD8], width: 4, height: 2 });
        let answer = Pictures { pictures, failure: Some(ImagingError::Decode("bad slice".into())) };
        let back = decode_answer(&encode_answer(&answer)).expect("decodes");
        assert_eq!(back.failure, answer.failure);
        let picture = &back.pictures[&7];
        assert_eq!((picture.bytes.as_slice(), picture.width, picture.height), (&[0xFF, 0xD8][..], 4, 2));
    }

    #[test]
    fn every_truncation_and_a_huge_count_are_errors() {
        let message = encode_job(&sample_job());
        for cut in 0..message.len() {
            assert!(decode_job(&message[..cut]).is_err(), "cut at {cut}");
        }
        // A count of four billion pictures in a five-byte message is refused, not allocated.
        assert!(decode_answer(&[0xFF, 0xFF, 0xFF, 0xFF, 0]).is_err());
    }

    #[test]
    fn messages_are_framed_and_oversized_lengths_refused() {
        let mut pipe = Vec::new();
        write_message(&mut pipe, b"one").expect("written");
        write_message(&mut pipe, b"").expect("written");
        let mut input = pipe.as_slice();
        assert_eq!(read_message(&mut input).expect("read"), Some(b"one".to_vec()));
        assert_eq!(read_message(&mut input).expect("read"), Some(Vec::new()));
        assert_eq!(read_message(&mut input).expect("end"), None);
        let huge = ((MAX_MESSAGE_BYTES + 1) as u32).to_le_bytes();
        assert!(read_message(&mut huge.as_slice()).is_err());
        assert!(read_message(&mut [5, 0, 0, 0, 1].as_slice()).is_err(), "cut short");
    }
}

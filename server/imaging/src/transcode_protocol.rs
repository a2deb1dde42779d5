//! The transcode worker's pipe protocol, in the decode worker's framing (`protocol::write_message`):
//! the server sends `Start`, then input frames, and closes the pipe to finish; the worker sends
//! output frames as they are encoded, then `Finished`, or `Failed` and exits. As with pictures,
//! the server checks every length it reads: a worker that decoded hostile media may be corrupted.

use crate::decode::EncodedFrame;
use crate::error::ImagingError;
use crate::protocol::{Reader, Writer, malformed, read_codec, read_error, write_codec, write_error};
use crate::transcode::{TranscodeStart, TranscodedFrame};

/// What the server tells the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToWorker {
    Start(TranscodeStart),
    Frame(EncodedFrame),
}

/// What the worker tells the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromWorker {
    Frame(TranscodedFrame),
    /// Every frame is out after the input closed.
    Finished,
    Failed(ImagingError),
}

pub fn encode_to_worker(message: &ToWorker) -> Vec<u8> {
    let mut out = Writer::default();
    match message {
        ToWorker::Start(TranscodeStart { codec, config, base_ms, keep_ms, key_frames_as_input }) => {
            out.u8(0);
            write_codec(&mut out, *codec);
            out.bytes(config);
            out.i64(*base_ms);
            out.option(keep_ms.as_ref(), |out, times| {
                out.u32(times.len() as u32);
                times.iter().for_each(|&ms| out.i64(ms));
            });
            out.u8(u8::from(*key_frames_as_input));
        }
        ToWorker::Frame(frame) => {
            out.u8(1);
            out.i64(frame.pts_ms);
            out.u8(u8::from(frame.keyframe));
            out.bytes(&frame.data);
        }
    }
    out.0
}

pub fn decode_to_worker(message: &[u8]) -> Result<ToWorker, ImagingError> {
    let mut input = Reader(message);
    let decoded = match input.u8()? {
        0 => {
            let codec = read_codec(&mut input)?;
            let config = input.bytes()?.to_vec();
            let base_ms = input.i64()?;
            let keep_ms = input.option(|input| (0..input.u32()?).map(|_| input.i64()).collect())?;
            let key_frames_as_input = input.u8()? != 0;
            ToWorker::Start(TranscodeStart { codec, config, base_ms, keep_ms, key_frames_as_input })
        }
        1 => {
            let pts_ms = input.i64()?;
            let keyframe = input.u8()? != 0;
            ToWorker::Frame(EncodedFrame { pts_ms, keyframe, data: input.bytes()?.to_vec() })
        }
        other => return Err(malformed(&format!("message kind {other}"))),
    };
    input.end()?;
    Ok(decoded)
}

pub fn encode_from_worker(message: &FromWorker) -> Vec<u8> {
    let mut out = Writer::default();
    match message {
        FromWorker::Frame(frame) => {
            out.u8(0);
            out.i64(frame.pts_ms);
            out.u8(u8::from(frame.keyframe));
            out.bytes(&frame.data);
            out.option(frame.avc_config.as_deref(), Writer::bytes);
        }
        FromWorker::Finished => out.u8(1),
        FromWorker::Failed(error) => {
            out.u8(2);
            write_error(&mut out, error);
        }
    }
    out.0
}

pub fn decode_from_worker(message: &[u8]) -> Result<FromWorker, ImagingError> {
    let mut input = Reader(message);
    let decoded = match input.u8()? {
        0 => {
            let pts_ms = input.i64()?;
            let keyframe = input.u8()? != 0;
            let data = input.bytes()?.to_vec();
            let avc_config = input.option(|input| input.bytes().map(<[u8]>::to_vec))?;
            FromWorker::Frame(TranscodedFrame { pts_ms, keyframe, data, avc_config })
        }
        1 => FromWorker::Finished,
        2 => FromWorker::Failed(read_error(&mut input)?),
        other => return Err(malformed(&format!("message kind {other}"))),
    };
    input.end()?;
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use framelog_media::package::Codec;

    use super::*;

    fn messages_from_worker() -> Vec<FromWorker> {
        let frame =
            TranscodedFrame { pts_ms: -7, keyframe: true, data: vec![0, 0, 0, 1, 0x65], avc_config: Some(vec![1, 2]) };
        vec![
            FromWorker::Frame(frame.clone()),
            FromWorker::Frame(TranscodedFrame { avc_config: None, keyframe: false, ..frame }),
            FromWorker::Finished,
            FromWorker::Failed(ImagingError::Decode("bad slice".into())),
        ]
    }

    #[test]
    fn every_message_reads_back_as_written() {
        for message in messages_from_worker() {
            assert_eq!(decode_from_worker(&encode_from_worker(&message)), Ok(message));
        }
        let to_worker = [
            ToWorker::Start(TranscodeStart {
                codec: Codec::Hevc,
                config: vec![1; 30],
                base_ms: 1_700_000_000_000,
                keep_ms: Some(vec![1_700_000_000_000, 1_700_000_000_033]),
                key_frames_as_input: false,
            }),
            ToWorker::Start(TranscodeStart {
                codec: Codec::Hevc,
                config: vec![2],
                base_ms: -5,
                keep_ms: None,
                key_frames_as_input: true,
            }),
            ToWorker::Frame(EncodedFrame { pts_ms: 5, keyframe: false, data: vec![9; 3] }),
        ];
        for message in to_worker {
            assert_eq!(decode_to_worker(&encode_to_worker(&message)), Ok(message));
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        for message in messages_from_worker() {
            let bytes = encode_from_worker(&message);
            for cut in 0..bytes.len() {
                assert!(decode_from_worker(&bytes[..cut]).is_err(), "{message:?} cut at {cut}");
            }
        }
        let start = encode_to_worker(&ToWorker::Start(TranscodeStart {
            codec: Codec::Hevc,
            config: vec![1; 4],
            base_ms: 0,
            keep_ms: Some(vec![3]),
            key_frames_as_input: true,
        }));
        for cut in 0..start.len() {
            assert!(decode_to_worker(&start[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode_from_worker(&[9]).is_err(), "unknown kind");
    }
}

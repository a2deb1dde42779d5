//! The fragmented-MP4 splitter against a hand-built init segment and fragment (ISO/IEC 14496-12
//! layout), and against damaged input.

use framelog_media::{Event, Limits, Mp4Fragmenter};
use proptest::prelude::*;

fn bx(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut out = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(payload);
    out
}

fn full(kind: &[u8; 4], version: u8, flags: u32, payload: &[u8]) -> Vec<u8> {
    let mut body = ((u32::from(version) << 24) | flags).to_be_bytes().to_vec();
    body.extend_from_slice(payload);
    bx(kind, &body)
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

const AVCC: &[u8] = &[1, 0x42, 0xC0, 0x1E, 0xFF, 0xE1, 0, 4, 0x67, 0x42, 0xC0, 0x1E, 1, 0, 2, 0x68, 0xCE];

fn init_segment() -> Vec<u8> {
    let tkhd = full(b"tkhd", 0, 3, &cat(&[vec![0; 8], 7u32.to_be_bytes().to_vec(), vec![0; 68]]));
    let mdhd = full(b"mdhd", 0, 0, &cat(&[vec![0; 8], 90_000u32.to_be_bytes().to_vec(), vec![0; 8]]));
    let hdlr = full(b"hdlr", 0, 0, &cat(&[vec![0; 4], b"vide".to_vec(), vec![0; 13]]));
    let mut avc1 = vec![0u8; 6];
    avc1.extend_from_slice(&1u16.to_be_bytes());
    avc1.extend_from_slice(&[0; 16]);
    avc1.extend_from_slice(&640u16.to_be_bytes());
    avc1.extend_from_slice(&360u16.to_be_bytes());
    avc1.extend_from_slice(&[0; 50]);
    avc1.extend_from_slice(&bx(b"avcC", AVCC));
    let stsd = full(b"stsd", 0, 0, &cat(&[1u32.to_be_bytes().to_vec(), bx(b"avc1", &avc1)]));
    let stbl = bx(b"stbl", &stsd);
    let minf = bx(b"minf", &stbl);
    let mdia = bx(b"mdia", &cat(&[mdhd, hdlr, minf]));
    let trak = bx(b"trak", &cat(&[tkhd, mdia]));
    // trex: track 7, description 1, default duration 3000 (1/30 s at 90 kHz), size 0, flags non-sync.
    let trex = full(
        b"trex",
        0,
        0,
        &cat(&[
            7u32.to_be_bytes().to_vec(),
            1u32.to_be_bytes().to_vec(),
            3000u32.to_be_bytes().to_vec(),
            vec![0; 4],
            0x0001_0000u32.to_be_bytes().to_vec(),
        ]),
    );
    let mvex = bx(b"mvex", &trex);
    cat(&[bx(b"ftyp", b"isom\0\0\0\0"), bx(b"moov", &cat(&[trak, mvex]))])
}

/// A moof+mdat with `samples` (their bytes), starting at decode time `dts_90k`; the first is a key frame.
fn fragment(samples: &[Vec<u8>], dts_90k: u64) -> Vec<u8> {
    let tfhd = full(b"tfhd", 0, 0x02_0000, &7u32.to_be_bytes());
    let tfdt = full(b"tfdt", 1, 0, &dts_90k.to_be_bytes());
    // trun: data-offset, first-sample-flags, per-sample size.
    let mut trun_body = (samples.len() as u32).to_be_bytes().to_vec();
    let data_offset_at = trun_body.len();
    trun_body.extend_from_slice(&0u32.to_be_bytes());
    trun_body.extend_from_slice(&0x0200_0000u32.to_be_bytes());
    for s in samples {
        trun_body.extend_from_slice(&(s.len() as u32).to_be_bytes());
    }
    let build = |trun_body: &[u8]| {
        let trun = full(b"trun", 0, 0x01 | 0x04 | 0x200, trun_body);
        let traf = bx(b"traf", &cat(&[tfhd.clone(), tfdt.clone(), trun]));
        bx(b"moof", &cat(&[full(b"mfhd", 0, 0, &1u32.to_be_bytes()), traf]))
    };
    let moof_len = build(&trun_body).len();
    trun_body[data_offset_at..data_offset_at + 4].copy_from_slice(&((moof_len + 8) as u32).to_be_bytes());
    cat(&[build(&trun_body), bx(b"mdat", &samples.concat())])
}

fn events(input: &[u8], chunk: usize) -> Result<Vec<Event>, framelog_media::MediaError> {
    let mut splitter = Mp4Fragmenter::new(Limits::default());
    let mut out = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
        splitter.push(piece);
        while let Some(event) = splitter.next_event()? {
            out.push(event);
        }
    }
    while let Some(event) = splitter.finish()? {
        out.push(event);
    }
    Ok(out)
}

#[test]
fn an_init_segment_and_fragments_become_tracks_and_clusters() {
    let samples: Vec<Vec<u8>> = (0..60u8).map(|i| vec![i; 10 + usize::from(i)]).collect();
    let input = cat(&[init_segment(), fragment(&samples, 0), fragment(&samples[..5], 180_000)]);
    for chunk in [input.len(), 1, 7, 333] {
        let events = events(&input, chunk).expect("valid fMP4");
        let Event::Tracks { tracks, .. } = &events[0] else { panic!("tracks first: {:?}", events[0]) };
        assert_eq!(tracks[0].codec_id, "V_MPEG4/ISO/AVC");
        assert_eq!(tracks[0].codec_private, AVCC);
        assert_eq!((tracks[0].pixel_width, tracks[0].pixel_height), (Some(640), Some(360)));
        assert!(matches!(events[1], Event::ClusterStarted { timecode: 0, .. }));
        let Event::Cluster(first) = &events[2] else { panic!("cluster: {:?}", events[2]) };
        assert_eq!(first.frames.len(), 60);
        assert!(first.frames[0].keyframe && !first.frames[1].keyframe);
        // 3000 ticks at 90 kHz = 33.3 ms per frame.
        assert_eq!(first.frames[30].relative_timecode, 1000);
        for (frame, expected) in first.frames.iter().zip(&samples) {
            assert_eq!(&first.body[frame.data.clone()], expected.as_slice());
        }
        assert!(matches!(events[3], Event::ClusterStarted { timecode: 2000, .. }));
        let Event::Cluster(second) = &events[4] else { panic!("cluster: {:?}", events[4]) };
        assert_eq!((second.timecode, second.frames.len()), (2000, 5));
    }
}

#[test]
fn a_fragment_before_the_init_segment_is_rejected() {
    let samples = vec![vec![1u8; 10]];
    assert!(events(&fragment(&samples, 0), 64).is_err());
}

#[test]
fn input_ending_inside_a_fragment_is_an_error() {
    let samples = vec![vec![1u8; 100]];
    let input = cat(&[init_segment(), fragment(&samples, 0)]);
    assert!(events(&input[..input.len() - 3], 50).is_err());
}

proptest! {
    /// Flipped and truncated bytes give errors or fewer fragments, never a panic.
    #[test]
    fn damaged_fmp4_never_panics(flip in any::<prop::sample::Index>(), xor in 1u8..=255, cut in any::<prop::sample::Index>(), chunk in 1usize..500) {
        let samples: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 20]).collect();
        let mut input = cat(&[init_segment(), fragment(&samples, 0)]);
        let at = flip.index(input.len());
        input[at] ^= xor;
        input.truncate(cut.index(input.len()) + 1);
        let _ = events(&input, chunk);
    }
}

//! The fragmenter against Matroska streams built here: known and unknown sizes, tags between
//! clusters, several segments, any split of the input into chunks, and bad input.

use framelog_media::{Event, Fragmenter, Limits, MediaError, ebml, ids};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct TestCluster {
    timecode: u64,
    /// (track, relative timecode, keyframe, payload)
    frames: Vec<(u64, i16, bool, Vec<u8>)>,
    known_size: bool,
    tags_before: Vec<(String, String)>,
}

fn header(out: &mut Vec<u8>) {
    ebml::write_element(out, ids::EBML, |e| ebml::write_bytes(e, ids::DOC_TYPE, b"matroska"));
}

fn info_and_tracks(out: &mut Vec<u8>) {
    ebml::write_element(out, ids::INFO, |i| ebml::write_uint(i, ids::TIMECODE_SCALE, 1_000_000));
    ebml::write_element(out, ids::TRACKS, |t| {
        ebml::write_element(t, ids::TRACK_ENTRY, |e| {
            ebml::write_uint(e, ids::TRACK_NUMBER, 1);
            ebml::write_uint(e, ids::TRACK_TYPE, 1);
            ebml::write_bytes(e, ids::CODEC_ID, b"V_MPEG4/ISO/AVC");
            ebml::write_bytes(e, ids::CODEC_PRIVATE, &[1, 0x42, 0xC0, 0x1E]);
            ebml::write_element(e, ids::VIDEO, |v| {
                ebml::write_uint(v, ids::PIXEL_WIDTH, 640);
                ebml::write_uint(v, ids::PIXEL_HEIGHT, 360);
            });
        });
        ebml::write_element(t, ids::TRACK_ENTRY, |e| {
            ebml::write_uint(e, ids::TRACK_NUMBER, 2);
            ebml::write_uint(e, ids::TRACK_TYPE, 2);
            ebml::write_bytes(e, ids::CODEC_ID, b"A_AAC");
            ebml::write_element(e, ids::AUDIO, |a| ebml::write_float(a, ids::SAMPLING_FREQUENCY, 48_000.0));
        });
    });
}

fn cluster_body(cluster: &TestCluster) -> Vec<u8> {
    let mut body = Vec::new();
    ebml::write_uint(&mut body, ids::TIMECODE, cluster.timecode);
    for (i, (track, relative, keyframe, payload)) in cluster.frames.iter().enumerate() {
        let mut block = Vec::new();
        ebml::write_size(&mut block, *track, false);
        block.extend_from_slice(&relative.to_be_bytes());
        if i % 3 == 2 {
            // Every third frame as a BlockGroup, as some muxers write them.
            block.push(0);
            block.extend_from_slice(payload);
            ebml::write_element(&mut body, ids::BLOCK_GROUP, |g| {
                ebml::write_bytes(g, ids::BLOCK, &block);
                if !keyframe {
                    ebml::write_uint(g, ids::REFERENCE_BLOCK, 1);
                }
            });
        } else {
            block.push(if *keyframe { 0x80 } else { 0 });
            block.extend_from_slice(payload);
            ebml::write_bytes(&mut body, ids::SIMPLE_BLOCK, &block);
        }
    }
    body
}

fn stream(clusters: &[TestCluster], segments_known_size: bool) -> Vec<u8> {
    let mut out = Vec::new();
    header(&mut out);
    let mut segment = Vec::new();
    info_and_tracks(&mut segment);
    for cluster in clusters {
        if !cluster.tags_before.is_empty() {
            ebml::write_element(&mut segment, ids::TAGS, |t| {
                ebml::write_element(t, ids::TAG, |tag| {
                    for (name, value) in &cluster.tags_before {
                        ebml::write_element(tag, ids::SIMPLE_TAG, |s| {
                            ebml::write_bytes(s, ids::TAG_NAME, name.as_bytes());
                            ebml::write_bytes(s, ids::TAG_STRING, value.as_bytes());
                        });
                    }
                });
            });
        }
        let body = cluster_body(cluster);
        ebml::write_id(&mut segment, ids::CLUSTER);
        ebml::write_size(&mut segment, if cluster.known_size { body.len() as u64 } else { ebml::UNKNOWN_SIZE }, false);
        segment.extend_from_slice(&body);
    }
    ebml::write_id(&mut out, ids::SEGMENT);
    ebml::write_size(&mut out, if segments_known_size { segment.len() as u64 } else { ebml::UNKNOWN_SIZE }, false);
    out.extend_from_slice(&segment);
    out
}

/// Feeds `input` in the given chunk sizes and collects every event through `finish`.
fn run(input: &[u8], chunks: &[usize]) -> Result<Vec<Event>, MediaError> {
    let mut fragmenter = Fragmenter::new(Limits::default());
    let mut events = Vec::new();
    let mut at = 0;
    let mut sizes = chunks.iter().cycle();
    while at < input.len() {
        let n = (*sizes.next().unwrap_or(&1)).clamp(1, input.len() - at);
        fragmenter.push(&input[at..at + n]);
        at += n;
        while let Some(event) = fragmenter.next_event()? {
            events.push(event);
        }
    }
    while let Some(event) = fragmenter.finish()? {
        events.push(event);
    }
    Ok(events)
}

fn test_cluster() -> impl Strategy<Value = TestCluster> {
    (
        any::<u32>(),
        proptest::collection::vec(
            (1u64..3, any::<i16>(), any::<bool>(), proptest::collection::vec(any::<u8>(), 0..300)),
            1..8,
        ),
        any::<bool>(),
        proptest::collection::vec(("[A-Z_]{1,12}", "[a-z0-9.]{0,20}"), 0..3),
    )
        .prop_map(|(timecode, frames, known_size, tags_before)| TestCluster {
            timecode: u64::from(timecode),
            frames,
            known_size,
            tags_before,
        })
}

fn check_events(events: &[Event], clusters: &[TestCluster]) -> Result<(), TestCaseError> {
    let Some(Event::Tracks { info, tracks, .. }) = events.first() else {
        return Err(TestCaseError::fail(format!("first event is not Tracks: {:?}", events.first())));
    };
    prop_assert_eq!(info.timecode_scale_ns, 1_000_000);
    prop_assert_eq!(tracks.len(), 2);
    prop_assert_eq!(tracks[0].codec_id.as_str(), "V_MPEG4/ISO/AVC");
    prop_assert_eq!(tracks[0].pixel_width, Some(640));
    prop_assert_eq!(tracks[1].sampling_frequency_hz, Some(48_000.0));
    let mut rest = events[1..].iter();
    for expected in clusters {
        if !expected.tags_before.is_empty() {
            let Some(Event::Tags(tags)) = rest.next() else { return Err(TestCaseError::fail("missing Tags")) };
            let got: Vec<_> = tags.iter().map(|t| (t.name.clone(), t.value.clone())).collect();
            prop_assert_eq!(&got, &expected.tags_before);
        }
        let started =
            matches!(rest.next(), Some(Event::ClusterStarted { timecode, .. }) if *timecode == expected.timecode);
        prop_assert!(started, "missing ClusterStarted");
        let Some(Event::Cluster(cluster)) = rest.next() else { return Err(TestCaseError::fail("missing Cluster")) };
        prop_assert_eq!(cluster.timecode, expected.timecode);
        prop_assert_eq!(cluster.frames.len(), expected.frames.len());
        for (frame, (track, relative, keyframe, payload)) in cluster.frames.iter().zip(&expected.frames) {
            prop_assert_eq!(frame.track, *track);
            prop_assert_eq!(frame.relative_timecode, *relative);
            prop_assert_eq!(frame.keyframe, *keyframe);
            prop_assert_eq!(&cluster.body[frame.data.clone()], payload.as_slice());
        }
    }
    prop_assert!(rest.next().is_none());
    Ok(())
}

proptest! {
    /// Whatever the sizes and however the bytes arrive, the same fragments, frames and tags come out.
    #[test]
    fn any_chunking_yields_the_same_fragments(clusters in proptest::collection::vec(test_cluster(), 1..6),
                                              known_segment in any::<bool>(),
                                              chunks in proptest::collection::vec(1usize..700, 1..8)) {
        let input = stream(&clusters, known_segment);
        let whole = run(&input, &[input.len()]).expect("parses whole");
        check_events(&whole, &clusters)?;
        let chunked = run(&input, &chunks).expect("parses in chunks");
        prop_assert_eq!(chunked, whole);
    }

    /// What the open cluster shows while it is received is always a prefix of the fragment it
    /// becomes: a live reader never sees a frame or a byte the stored fragment will not have.
    #[test]
    fn the_open_cluster_is_a_prefix_of_the_finished_one(clusters in proptest::collection::vec(test_cluster(), 1..5),
                                                        chunks in proptest::collection::vec(1usize..200, 1..8)) {
        let input = stream(&clusters, false);
        let mut fragmenter = Fragmenter::new(Limits::default());
        let mut seen: Vec<(u64, Vec<framelog_media::Frame>, Vec<u8>)> = Vec::new();
        let mut checked = 0;
        let mut at = 0;
        let mut sizes = chunks.iter().cycle();
        let mut check = |event: Event, seen: &mut Vec<(u64, Vec<framelog_media::Frame>, Vec<u8>)>| -> Result<(), TestCaseError> {
            if let Event::Cluster(cluster) = event {
                for (timecode, frames, body) in seen.drain(..) {
                    prop_assert_eq!(timecode, cluster.timecode);
                    prop_assert!(cluster.frames.starts_with(&frames));
                    prop_assert!(cluster.body.starts_with(&body));
                }
                checked += 1;
            }
            Ok(())
        };
        while at < input.len() {
            let n = (*sizes.next().unwrap_or(&1)).clamp(1, input.len() - at);
            fragmenter.push(&input[at..at + n]);
            at += n;
            while let Some(event) = fragmenter.next_event().expect("parses") {
                check(event, &mut seen)?;
            }
            if let Some(open) = fragmenter.open_cluster() {
                seen.push((open.timecode, open.frames.to_vec(), open.body.to_vec()));
            }
        }
        while let Some(event) = fragmenter.finish().expect("finishes") {
            check(event, &mut seen)?;
        }
        prop_assert_eq!(checked, clusters.len());
    }

    /// Truncated or corrupted input is an error or fewer fragments, never a panic.
    #[test]
    fn damaged_input_never_panics(clusters in proptest::collection::vec(test_cluster(), 1..4),
                                  cut in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>(), xor in 1u8..=255) {
        let mut input = stream(&clusters, false);
        let flip_at = flip.index(input.len());
        input[flip_at] ^= xor;
        input.truncate(cut.index(input.len()) + 1);
        let _ = run(&input, &[97]);
    }
}

#[test]
fn a_cluster_over_the_limit_is_rejected_before_it_is_buffered() {
    let mut input = Vec::new();
    header(&mut input);
    ebml::write_id(&mut input, ids::SEGMENT);
    ebml::write_size(&mut input, ebml::UNKNOWN_SIZE, false);
    ebml::write_id(&mut input, ids::CLUSTER);
    ebml::write_size(&mut input, 60_000_000, false);
    let mut fragmenter = Fragmenter::new(Limits::default());
    fragmenter.push(&input);
    let error = fragmenter.next_event().expect_err("too large");
    assert!(matches!(error, MediaError::TooLarge { size_bytes: 60_000_000, .. }), "{error:?}");
}

#[test]
fn an_unknown_size_cluster_over_the_limit_is_rejected_as_it_grows() {
    let mut fragmenter = Fragmenter::new(Limits { max_cluster_bytes: 1_000, max_element_bytes: 1_000 });
    let mut input = Vec::new();
    ebml::write_id(&mut input, ids::CLUSTER);
    ebml::write_size(&mut input, ebml::UNKNOWN_SIZE, false);
    ebml::write_uint(&mut input, ids::TIMECODE, 0);
    fragmenter.push(&input);
    assert!(matches!(fragmenter.next_event(), Ok(Some(Event::ClusterStarted { timecode: 0, .. }))));
    let mut block = vec![0x81, 0, 0, 0x80];
    block.resize(600, 7);
    let mut blocks = Vec::new();
    ebml::write_bytes(&mut blocks, ids::SIMPLE_BLOCK, &block);
    ebml::write_bytes(&mut blocks, ids::SIMPLE_BLOCK, &block);
    fragmenter.push(&blocks);
    assert!(matches!(fragmenter.next_event(), Err(MediaError::TooLarge { .. })));
    assert!(fragmenter.buffered_bytes() < 2_000, "memory stays bounded by the limit");
}

#[test]
fn a_document_that_is_not_matroska_is_rejected() {
    let mut input = Vec::new();
    ebml::write_element(&mut input, ids::EBML, |e| ebml::write_bytes(e, ids::DOC_TYPE, b"notmkv"));
    let mut fragmenter = Fragmenter::new(Limits::default());
    fragmenter.push(&input);
    assert_eq!(fragmenter.next_event(), Err(MediaError::DocType { doc_type: "notmkv".into() }));
}

#[test]
fn input_ending_inside_a_known_size_cluster_is_an_error() {
    let clusters =
        [TestCluster { timecode: 5, frames: vec![(1, 0, true, vec![1, 2, 3])], known_size: true, tags_before: vec![] }];
    let input = stream(&clusters, false);
    assert!(run(&input[..input.len() - 2], &[input.len()]).is_err());
}

#[test]
fn a_cluster_with_more_frames_than_a_fragment_may_hold_is_rejected() {
    let mut input = Vec::new();
    ebml::write_id(&mut input, ids::CLUSTER);
    ebml::write_size(&mut input, ebml::UNKNOWN_SIZE, false);
    ebml::write_uint(&mut input, ids::TIMECODE, 0);
    for _ in 0..=framelog_media::MAX_FRAMES_PER_FRAGMENT {
        ebml::write_bytes(&mut input, ids::SIMPLE_BLOCK, &[0x81, 0, 0, 0x80]);
    }
    let result = run(&input, &[input.len()]);
    assert!(
        matches!(result, Err(MediaError::Malformed { reason: "more frames than a fragment may hold", .. })),
        "{result:?}"
    );
}

//! The edge agent against the real server through a fault-injecting proxy: exactly-once upload
//! through cuts, stalls, refused connects and server crashes; `kill -9` of the agent while it
//! records and while it uploads; both buffer strategies with the server unreachable.
//!
//! Ground truth: the source file's frames (parsed here from the file GStreamer wrote) and the
//! identity each fragment carries (`<agent>/<stream>/<seq>`, seq counting from 0 without gaps).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use framelog_media::{Event, Fragmenter, Limits};
use framelog_media_tests::Server;
use framelog_media_tests::edge::{EdgeAgent, free_status_address};
use framelog_media_tests::fault_proxy::FaultProxy;
use framelog_sdk::{Client, ClientConfig, ConsumedFragment, TimestampKind};

/// Seconds of the soak (a fault about every 5 s); `make soak` runs 600.
fn soak_seconds() -> u64 {
    std::env::var("FRAMELOG_EDGE_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(105)
}

/// A `seconds`-long 320x240 H.264 file with a key frame every second; every frame differs (the
/// ball moves), so frames identify themselves by their bytes.
fn make_source(path: &Path, seconds: u64) {
    let pipeline = format!(
        "videotestsrc num-buffers={} pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1,format=I420 \
         ! x264enc key-int-max=30 bitrate=300 speed-preset=ultrafast ! h264parse ! matroskamux ! filesink location={}",
        seconds * 30,
        path.display()
    );
    let status =
        Command::new("gst-launch-1.0").arg("-q").args(pipeline.split_whitespace()).status().expect("gst-launch-1.0");
    assert!(status.success(), "making the source failed");
}

/// An AVC access unit without its parameter sets and delimiter (NAL types 7, 8, 9): what
/// identifies the picture. h264parse in the agent's pipeline puts SPS/PPS in front of the first
/// key frame it passes; the picture data stays byte for byte the same.
fn picture_nals(access_unit: &[u8]) -> Vec<&[u8]> {
    let mut nals = Vec::new();
    let mut at = 0;
    while at + 4 <= access_unit.len() {
        let len = u32::from_be_bytes([access_unit[at], access_unit[at + 1], access_unit[at + 2], access_unit[at + 3]])
            as usize;
        let Some(nal) = access_unit.get(at + 4..at + 4 + len) else { break };
        if !nal.is_empty() && !matches!(nal[0] & 0x1F, 7..=9) {
            nals.push(nal);
        }
        at += 4 + len;
    }
    nals
}

/// The frames of an MKV file, in order.
fn file_frames(path: &Path) -> Vec<Vec<u8>> {
    file_track_frames(path).into_iter().map(|(_, data)| data).collect()
}

/// (track number, bytes) of every frame of an MKV file, in order.
fn file_track_frames(path: &Path) -> Vec<(u64, Vec<u8>)> {
    let mut fragmenter = Fragmenter::new(Limits::default());
    fragmenter.push(&std::fs::read(path).expect("source"));
    let mut frames = Vec::new();
    while let Some(event) = fragmenter.finish().expect("valid MKV") {
        if let Event::Cluster(cluster) = event {
            frames.extend(cluster.frames.iter().map(|f| (f.track, cluster.body[f.data.clone()].to_vec())));
        }
    }
    frames
}

fn config(server: &str, buffer: &Path, status: std::net::SocketAddr, stream: &str, extra: &str) -> String {
    format!(
        "server = \"{server}\"\nbuffer_dir = \"{}\"\nstatus_listen = \"{status}\"\nmax_backoff_ms = 300\n{extra}\n\
         [[stream]]\nname = \"{stream}\"\nfragment_duration_ms = 1000\n",
        buffer.display()
    )
}

fn stream_status(agent: &EdgeAgent) -> serde_json::Value {
    agent.status().expect("status")[0].clone()
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting for {what}");
}

/// Every stored fragment of `stream` in producer-time order, with its frames.
fn stored(server_url: &str, stream: &str) -> Vec<ConsumedFragment> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let client = Client::new(ClientConfig::new(server_url));
        let mut listed = client.list_fragments(stream, TimestampKind::Server, 0, u64::MAX / 2).await.expect("list");
        listed.sort_by_key(|f| (f.producer_ts_ms, f.fragment_number.clone()));
        let numbers: Vec<String> = listed.iter().map(|f| f.fragment_number.clone()).collect();
        let mut reader = client.get_media_for_fragment_list(stream, &numbers).await.expect("read");
        let mut out = Vec::new();
        while out.len() < numbers.len() {
            match tokio::time::timeout(Duration::from_secs(30), reader.next_fragment()).await {
                Ok(Ok(Some(fragment))) => out.push(fragment),
                other => panic!("reading fragments: {other:?}"),
            }
        }
        out
    })
}

/// The sequence number in a fragment's identity (`<agent>/<stream>/<seq>`).
fn seq_of(fragment: &ConsumedFragment) -> u64 {
    let id = fragment.producer_fragment_id.as_deref().expect("every agent fragment carries its identity");
    id.rsplit('/').next().and_then(|s| s.parse().ok()).expect("a numeric sequence")
}

#[test]
fn every_frame_arrives_exactly_once_in_order_through_cuts_stalls_refusals_and_server_crashes() {
    let seconds = soak_seconds();
    let dir = tempfile::tempdir().expect("dir");
    let source = dir.path().join("source.mkv");
    make_source(&source, seconds + 5);
    let source_frames = file_frames(&source);
    let mut server = Server::start().expect("server");
    let address: std::net::SocketAddr = server.url().trim_start_matches("http://").parse().expect("address");
    let proxy = FaultProxy::start(address).expect("proxy");
    let status = free_status_address().expect("port");
    let text = config(&format!("http://{}", proxy.address), &dir.path().join("buffer"), status, "soak", "")
        + &format!("source = \"file://{}\"\nloop_file = false\n", source.display());
    let agent = EdgeAgent::start(&text, dir.path(), status).expect("agent");

    // A fault every 3 s (plus the fault's own length) while the file records in real time.
    let started = Instant::now();
    let mut faults = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(3));
        match faults % 5 {
            0 => proxy.cut_all(),
            1 => {
                proxy.set_stalled(true);
                std::thread::sleep(Duration::from_secs(2));
                proxy.cut_all();
                proxy.set_stalled(false);
            }
            2 => {
                proxy.set_refusing(true);
                proxy.cut_all();
                std::thread::sleep(Duration::from_secs(4));
                proxy.set_refusing(false);
            }
            3 => proxy.cut_all(),
            _ => {
                server.kill9().expect("kill -9");
                std::thread::sleep(Duration::from_secs(2));
                server.restart_on_same_port().expect("restart");
            }
        }
        faults += 1;
    }
    wait_for("the file to be recorded and the buffer drained", Duration::from_secs(120), || {
        let s = stream_status(&agent);
        !s["recording"].as_bool().unwrap_or(true)
            && s["buffered_fragments"] == 0
            && s["recorded_fragments"].as_u64() > Some(0)
    });

    eprintln!("soak: {faults} faults over {seconds} s");
    let fragments = stored(&server.url(), "soak");
    let seqs: Vec<u64> = fragments.iter().map(seq_of).collect();
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>(), "every fragment once, in order, none missing");
    let frames: Vec<Vec<u8>> = fragments.iter().flat_map(|f| f.frames.iter().map(|m| m.data.to_vec())).collect();
    let first_difference = frames.iter().zip(&source_frames).position(|(a, b)| picture_nals(a) != picture_nals(b));
    assert_eq!(
        (frames.len(), first_difference),
        (source_frames.len(), None),
        "every source frame stored exactly once, in order ({faults} faults; fragment sizes {:?})",
        fragments.iter().map(|f| f.frames.len()).collect::<Vec<_>>()
    );
    let buffered = std::fs::read_dir(dir.path().join("buffer/soak/fragments")).expect("buffer").count();
    assert_eq!(buffered, 0, "the local buffer is drained");
    // A fault that lands while the agent is between connections (backing off after the previous
    // one) costs it no new connection, so not every fault shows as one; most do.
    let forwarded = proxy.forwarded.load(std::sync::atomic::Ordering::Relaxed);
    assert!(forwarded >= faults / 2, "the agent reconnected after faults: {forwarded} connections, {faults} faults");
    // The target is at least 20 faults; a shorter FRAMELOG_EDGE_SOAK_SECS is for trying things out.
    assert!(faults >= 20 || seconds < 100, "{faults} faults");
}

#[test]
fn aac_audio_is_recorded_beside_the_video_frame_for_frame() {
    let dir = tempfile::tempdir().expect("dir");
    let source = dir.path().join("av.mkv");
    // 6 s of H.264 and AAC (two tracks in the muxer; which number each gets is the muxer's).
    let pipeline = format!(
        "matroskamux name=m ! filesink location={} \
         videotestsrc num-buffers=180 pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1,format=I420 \
         ! x264enc key-int-max=30 bitrate=300 speed-preset=ultrafast ! h264parse ! m. \
         audiotestsrc num-buffers=180 samplesperbuffer=1600 ! audio/x-raw,rate=48000,channels=2 ! audioconvert ! avenc_aac ! aacparse ! m.",
        source.display()
    );
    let status =
        Command::new("gst-launch-1.0").arg("-q").args(pipeline.split_whitespace()).status().expect("gst-launch-1.0");
    assert!(status.success());
    let source_frames = file_track_frames(&source);
    let video_track =
        source_frames.iter().find(|(_, data)| !picture_nals(data).is_empty()).map(|(t, _)| *t).expect("video");
    let server = Server::start().expect("server");
    let status = free_status_address().expect("port");
    let text = config(&server.url(), &dir.path().join("buffer"), status, "av", "")
        + &format!("source = \"file://{}\"\nloop_file = false\n", source.display());
    let agent = EdgeAgent::start(&text, dir.path(), status).expect("agent");
    wait_for("the file to be recorded and uploaded", Duration::from_secs(60), || {
        let s = stream_status(&agent);
        !s["recording"].as_bool().unwrap_or(true)
            && s["buffered_fragments"] == 0
            && s["recorded_fragments"].as_u64() > Some(0)
    });

    let fragments = stored(&server.url(), "av");
    assert!(
        fragments.iter().all(|f| f.tracks.len() == 2 && f.tracks[1].codec_id == "A_AAC"),
        "every fragment has both tracks"
    );
    let stored_video: Vec<Vec<u8>> =
        fragments.iter().flat_map(|f| f.frames.iter().filter(|m| m.track == 1).map(|m| m.data.to_vec())).collect();
    let stored_audio: Vec<Vec<u8>> =
        fragments.iter().flat_map(|f| f.frames.iter().filter(|m| m.track == 2).map(|m| m.data.to_vec())).collect();
    let source_video: Vec<&Vec<u8>> = source_frames.iter().filter(|(t, _)| *t == video_track).map(|(_, d)| d).collect();
    let source_audio: Vec<&Vec<u8>> = source_frames.iter().filter(|(t, _)| *t != video_track).map(|(_, d)| d).collect();
    assert_eq!(stored_video.len(), source_video.len());
    assert!(
        stored_video.iter().zip(&source_video).all(|(a, b)| picture_nals(a) == picture_nals(b)),
        "video frame for frame"
    );
    // Audio that reaches the recorder before the first video key frame has no fragment to go in
    // (at most a few 21 ms AAC frames); everything after it arrives.
    let skipped = source_audio.len() - stored_audio.len();
    assert!(skipped <= 10, "{skipped} audio frames missing");
    assert!(stored_audio.iter().zip(&source_audio[skipped..]).all(|(a, b)| a == *b), "audio frame for frame");
}

/// Sequence numbers of the fragments in an agent's buffer right now (a `.tmp` file is a fragment
/// still being written: a kill -9 then loses it, as the agent never recorded it).
fn buffered_seqs(buffer: &Path) -> BTreeSet<u64> {
    let names = std::fs::read_dir(buffer).into_iter().flatten().filter_map(|e| e.ok()?.file_name().into_string().ok());
    names.filter(|name| !name.ends_with(".tmp")).filter_map(|name| name.split('_').next()?.parse().ok()).collect()
}

#[test]
fn kill_9_while_recording_and_while_uploading_loses_nothing_recorded() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start().expect("server");
    let address: std::net::SocketAddr = server.url().trim_start_matches("http://").parse().expect("address");
    let proxy = FaultProxy::start(address).expect("proxy");
    let status = free_status_address().expect("port");
    let buffer = dir.path().join("buffer");
    let text = config(&format!("http://{}", proxy.address), &buffer, status, "crash", "")
        + "source = \"testsrc:\"\nwidth = 320\nheight = 240\nbitrate_kbps = 300\nkey_frame_interval_frames = 30\n";
    proxy.set_refusing(true);
    let mut agent = EdgeAgent::start(&text, dir.path(), status).expect("agent");
    let fragments_dir = buffer.join("crash/fragments");
    wait_for("a backlog of 5 fragments", Duration::from_secs(30), || buffered_seqs(&fragments_dir).len() >= 5);

    // kill -9 while recording: what was on disk is recorded and must arrive.
    agent.kill9().expect("kill");
    let recorded_before_crash = buffered_seqs(&fragments_dir);
    proxy.set_refusing(false);
    agent.restart().expect("restart");
    wait_for("some of the backlog to upload", Duration::from_secs(30), || {
        stream_status(&agent)["uploaded_fragments"].as_u64() >= Some(2)
    });
    // kill -9 while uploading: fragments in flight were not yet deleted and go again.
    agent.kill9().expect("kill while uploading");
    let recorded_before_second_crash = buffered_seqs(&fragments_dir);
    agent.restart().expect("restart again");
    wait_for("everything recorded before the crashes to be stored", Duration::from_secs(60), || {
        let stored: BTreeSet<u64> = stored(&server.url(), "crash").iter().map(seq_of).collect();
        recorded_before_crash.is_subset(&stored) && recorded_before_second_crash.is_subset(&stored)
    });
    agent.stop().expect("stop");
    let seqs: Vec<u64> = stored(&server.url(), "crash").iter().map(seq_of).collect();
    let unique: BTreeSet<u64> = seqs.iter().copied().collect();
    assert_eq!(unique.len(), seqs.len(), "no fragment stored twice: {seqs:?}");
    // Backlog and live lanes interleave on the server by producer time, which is recording order.
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "producer-time order is recording order: {seqs:?}");
    assert!(agent.log().contains("framelog-edge running"));
}

#[test]
fn a_full_buffer_applies_each_strategy_and_counts_what_it_cost() {
    for (strategy, counter) in [("delete_oldest_media", "dropped_fragments"), ("deny_new_media", "refused_fragments")] {
        let dir = tempfile::tempdir().expect("dir");
        let status = free_status_address().expect("port");
        let buffer = dir.path().join("buffer");
        // Nothing listens at the server address: the buffer only fills.
        let unreachable = free_status_address().expect("port");
        let text = config(
            &format!("http://{unreachable}"),
            &buffer,
            status,
            "full",
            &format!("max_local_media_mb = 1\nstrategy_on_full = \"{strategy}\""),
        ) + "source = \"testsrc:snow\"\nwidth = 640\nheight = 480\nbitrate_kbps = 3000\nkey_frame_interval_frames = 15\n";
        let agent = EdgeAgent::start(&text, dir.path(), status).expect("agent");
        wait_for("the cap to be hit", Duration::from_secs(40), || stream_status(&agent)[counter].as_u64() >= Some(2));
        let s = stream_status(&agent);
        assert!(s["buffered_bytes"].as_u64() <= Some(1 << 20), "{s}");
        let on_disk: u64 = std::fs::read_dir(buffer.join("full/fragments"))
            .expect("dir")
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum();
        assert!(on_disk <= 1 << 20, "{on_disk} bytes on disk");
        let seqs = buffered_seqs(&buffer.join("full/fragments"));
        if strategy == "deny_new_media" {
            assert_eq!(seqs.first(), Some(&0), "the oldest fragments are kept: {seqs:?}");
            assert_eq!(s["dropped_fragments"], 0);
            assert!(agent.log().contains("deny_new_media"), "the refusal is logged");
        } else {
            assert!(seqs.first() > Some(&0), "the oldest fragments made room: {seqs:?}");
            assert_eq!(s["refused_fragments"], 0);
            assert!(agent.log().contains("delete_oldest_media"), "the deletion is logged");
        }
        let metrics = agent.metrics().expect("metrics");
        assert!(
            metrics.contains(&format!("framelog_edge_{counter}_total{{stream=\"full\"}} {}", s[counter])),
            "{metrics}"
        );
    }
}

/// A tmpfs of `mib` MiB at `path`, unmounted when dropped (the suite runs as root, as CI does).
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(path: &Path, mib: u64) -> SmallDisk {
        std::fs::create_dir_all(path).expect("mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(path)
            .status()
            .expect("mount");
        assert!(status.success(), "mounting a {mib} MiB tmpfs at {} failed", path.display());
        SmallDisk(path.to_path_buf())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_disk_that_fills_before_the_cap_applies_each_strategy_and_recovers_when_space_returns() {
    for (strategy, counter) in [("delete_oldest_media", "dropped_fragments"), ("deny_new_media", "refused_fragments")] {
        let dir = tempfile::tempdir().expect("dir");
        let disk = SmallDisk::mount(&dir.path().join("disk"), 4);
        // Most of the disk is taken by something else: the 1000 MB cap is never what stops it.
        let filler = disk.0.join("filler");
        std::fs::write(&filler, vec![1u8; 3 << 20]).expect("filler");
        let status = free_status_address().expect("port");
        let unreachable = free_status_address().expect("port");
        let text = config(
            &format!("http://{unreachable}"),
            &disk.0.join("buffer"),
            status,
            "full",
            &format!("max_local_media_mb = 1000\nstrategy_on_full = \"{strategy}\""),
        ) + "source = \"testsrc:snow\"\nwidth = 640\nheight = 480\nbitrate_kbps = 3000\nkey_frame_interval_frames = 15\n";
        let mut agent = EdgeAgent::start(&text, dir.path(), status).expect("agent");
        wait_for("the disk to fill", Duration::from_secs(40), || stream_status(&agent)[counter].as_u64() >= Some(2));
        let logged = if strategy == "deny_new_media" { "disk full: a new fragment was dropped" } else { strategy };
        assert!(agent.log().contains(logged), "{}", agent.log());
        let seqs = buffered_seqs(&disk.0.join("buffer/full/fragments"));
        if strategy == "deny_new_media" {
            assert_eq!(seqs.first(), Some(&0), "the oldest fragments are kept: {seqs:?}");
        } else {
            assert!(seqs.first() > Some(&0), "the oldest fragments made room: {seqs:?}");
        }
        let tmp_files = std::fs::read_dir(disk.0.join("buffer/full/fragments"))
            .expect("dir")
            .filter(|e| e.as_ref().is_ok_and(|e| e.path().extension().is_some_and(|x| x == "tmp")))
            .count();
        assert!(tmp_files <= 1, "partial writes are cleaned up ({tmp_files} .tmp files)");

        // Space comes back: recording goes on into it, without a restart.
        std::fs::remove_file(&filler).expect("free the space");
        let before = stream_status(&agent)["buffered_bytes"].as_u64().expect("bytes");
        wait_for("recording into the freed space", Duration::from_secs(40), || {
            stream_status(&agent)["buffered_bytes"].as_u64() > Some(before + (1 << 20))
        });
        assert!(agent.running(), "the agent kept running: {}", agent.log());
    }
}

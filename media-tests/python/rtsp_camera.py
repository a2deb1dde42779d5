#!/usr/bin/python3
"""A small RTSP camera for tests: serves an H.264 file (Matroska or MP4) over RTSP, passed through
without re-encoding and looped for ever, through GStreamer's RTSP server (gst-rtsp-server).

Run it with the SYSTEM python, which has `gi` and GstRtspServer 1.0 from the Debian packages
`python3-gi gir1.2-gst-rtsp-server-1.0` (the project's .venv has no `gi`):

    /usr/bin/python3 media-tests/python/rtsp_camera.py --port 8554 --mount /cam --file clip.mkv \
        [--user u --password p] [--transport tcp|udp|both]

It prints `READY rtsp://127.0.0.1:<port>/<mount>` on stdout once it serves (with `--port 0` the port
is the one the system picked), and stops on SIGTERM or SIGINT.

How the file is served: at start the file's H.264 access units are read into memory (parsebin !
h264parse, no decoding). Each RTSP media is `appsrc ! h264parse ! rtph264pay config-interval=1`, and a
feeder thread pushes the frames into it in file order, looped for ever, in real time, with
timestamps growing by one frame duration per frame across loops: frame n (counting on over loops)
has PTS = DTS = t0 + n / fps. The file starts with a key frame, so the loop point is a clean GOP
boundary, and the picture NAL units on the wire are byte for byte those of the file. The media is
live and shared: every client sees the same stream from where it stands, like the clients of a
real camera; a new media (after all clients left) starts at the file's first frame again. The
first frame of a new media flows while the media is prepared (the SDP needs the payloader's caps)
and reaches the first client together with the second one, as from a camera that sends its
latest key frame at once on PLAY; the RTP timestamps stay exactly one frame apart.

Why not `multifilesrc loop=true`: a looped Matroska/MP4 file is not one valid container stream,
and a looped elementary stream leaves h264parse without PTS (rtph264pay then gives every frame the
same RTP time, and clients see one frame). A seek on EOS would have to go through the RTSP media's
own bus handling; feeding an appsrc keeps exact, ever-growing timestamps in our hands instead.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path
from typing import NamedTuple

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

EXTRACT_TIMEOUT_S = 120


def quoted(path: Path) -> str:
    """A path as a gst-launch property value (double quotes; GStreamer's parser has no single quotes)."""
    text = str(path)
    if '"' in text or "\\" in text:
        raise SystemExit(f"rtsp_camera: unsupported characters in {text!r}")
    return f'"{text}"'


class Frame(NamedTuple):
    data: bytes  # one access unit, Annex-B
    keyframe: bool


def read_frames(source: Path) -> tuple[list[Frame], tuple[int, int]]:
    """The file's H.264 access units in file (decode) order, as an Annex-B byte stream, without
    re-encoding; and the frame rate (numerator, denominator) of the parsed caps (30/1 if none)."""
    pipeline = Gst.parse_launch(
        f"filesrc location={quoted(source)} ! parsebin ! h264parse "
        f"! video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=sink sync=false"
    )
    sink = pipeline.get_by_name("sink")
    pipeline.set_state(Gst.State.PLAYING)
    frames: list[Frame] = []
    rate = (30, 1)
    deadline = time.monotonic() + EXTRACT_TIMEOUT_S
    while time.monotonic() < deadline:
        sample = sink.emit("try-pull-sample", Gst.SECOND)
        if sample is None:
            if sink.get_property("eos"):
                break
            message = pipeline.get_bus().pop_filtered(Gst.MessageType.ERROR)
            if message is not None:
                pipeline.set_state(Gst.State.NULL)
                error, debug = message.parse_error()
                raise SystemExit(f"rtsp_camera: {source} has no readable H.264 track: {error.message} ({debug})")
            continue
        if not frames:
            ok, num, den = sample.get_caps().get_structure(0).get_fraction("framerate")
            if ok and num > 0:
                rate = (num, den)
        buffer = sample.get_buffer()
        frames.append(
            Frame(buffer.extract_dup(0, buffer.get_size()), not buffer.has_flags(Gst.BufferFlags.DELTA_UNIT))
        )
    else:
        pipeline.set_state(Gst.State.NULL)
        raise SystemExit(f"rtsp_camera: reading {source} took more than {EXTRACT_TIMEOUT_S} s")
    pipeline.set_state(Gst.State.NULL)
    if not frames:
        raise SystemExit(f"rtsp_camera: {source} gave no H.264 frames")
    if not frames[0].keyframe:
        raise SystemExit(f"rtsp_camera: {source} does not start with a key frame")
    return frames, rate


class Feeder:
    """Pushes the file's frames, looped, into one media's appsrc in real time: frame n has
    PTS = DTS = t0 + n * frame duration (t0: the running time when feeding starts) and is pushed when
    the pipeline clock reaches it."""

    def __init__(self, appsrc: Gst.Element, frames: list[Frame], frame_ns: int):
        self.appsrc = appsrc
        self.frames = frames
        self.frame_ns = frame_ns
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="feeder", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()

    def _run(self) -> None:
        # A live media goes to PLAYING while it is prepared; until then it has no clock.
        while not self.stopped.is_set():
            clock = self.appsrc.get_clock()
            if clock is not None and self.appsrc.get_state(0)[1] == Gst.State.PLAYING:
                break
            time.sleep(0.01)
        else:
            return
        base = self.appsrc.get_base_time()
        t0 = clock.get_time() - base
        n = 0
        while not self.stopped.is_set():
            frame = self.frames[n % len(self.frames)]
            pts = t0 + n * self.frame_ns
            wait_ns = base + pts - clock.get_time()
            if wait_ns > 0:
                if self.stopped.wait(wait_ns / 1e9):
                    return
            buffer = Gst.Buffer.new_wrapped(frame.data)
            buffer.pts = buffer.dts = pts
            buffer.duration = self.frame_ns
            if not frame.keyframe:
                buffer.set_flags(Gst.BufferFlags.DELTA_UNIT)
            if self.appsrc.emit("push-buffer", buffer) != Gst.FlowReturn.OK:
                return  # the media is shutting down
            n += 1


def make_auth(user: str, password: str) -> GstRtspServer.RTSPAuth:
    """Basic authentication: only `user:password` may see and play the media."""
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "camera-user")
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
    return auth


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8554, help="TCP port of the RTSP server (0: any free port)")
    parser.add_argument("--mount", default="/cam", help="mount point, e.g. /cam")
    parser.add_argument("--file", required=True, type=Path, help="H.264 Matroska or MP4 file to serve in a loop")
    parser.add_argument("--user", help="require RTSP basic authentication with this user")
    parser.add_argument("--password", default="", help="the user's password")
    parser.add_argument(
        "--transport", choices=["tcp", "udp", "both"], default="both", help="RTP transports offered to clients"
    )
    args = parser.parse_args()
    mount = "/" + args.mount.strip("/")

    Gst.init(None)
    if not args.file.is_file():
        raise SystemExit(f"rtsp_camera: no file {args.file}")
    frames, (num, den) = read_frames(args.file.resolve())
    frame_ns = Gst.util_uint64_scale(Gst.SECOND, den, num)

    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( appsrc name=src is-live=true format=time max-bytes=0 "
        f"caps=video/x-h264,stream-format=byte-stream,alignment=au,framerate={num}/{den} "
        f"! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    # One media for every client, as a camera has one encoder.
    factory.set_shared(True)
    factory.set_protocols(
        {
            "tcp": GstRtsp.RTSPLowerTrans.TCP,
            "udp": GstRtsp.RTSPLowerTrans.UDP,
            "both": GstRtsp.RTSPLowerTrans.TCP | GstRtsp.RTSPLowerTrans.UDP,
        }[args.transport]
    )
    feeders: dict[int, Feeder] = {}

    def on_media_configure(_factory, media):
        appsrc = media.get_element().get_by_name("src")
        feeders[id(media)] = Feeder(appsrc, frames, frame_ns)
        media.connect("unprepared", lambda m: feeders.pop(id(m)).stop() if id(m) in feeders else None)

    factory.connect("media-configure", on_media_configure)

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    if args.user:
        server.set_auth(make_auth(args.user, args.password))
        role, _ = Gst.Structure.from_string(
            "camera-user, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
        )
        factory.add_role_from_structure(role)
    server.get_mount_points().add_factory(mount, factory)
    if server.attach(None) == 0:
        print(f"rtsp_camera: cannot listen on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
        return 1

    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, loop.quit)
    print(f"READY rtsp://127.0.0.1:{server.get_bound_port()}{mount}", flush=True)
    loop.run()
    for feeder in feeders.values():
        feeder.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

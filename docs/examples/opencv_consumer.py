"""An example Framelog consumer: a webhook that runs two OpenCV detectors on the frames it is sent and
writes what it finds back onto the stream as fragment metadata (see docs/consumers.md).

    python3 opencv_consumer.py --listen 127.0.0.1:9000

serves POST /frames. Each frame is a base64 JPEG or PNG; the answer is `{"labels": {...}}`:
`{"faces": "2"}` when OpenCV's bundled Haar frontal-face cascade sees two faces, `{"qr": "<text>"}`
when cv2.QRCodeDetector decodes a QR code, `{}` labels when nothing is found. Framelog attaches the
labels to every fragment of the batch, so with `Batching.MaxFrames` 1 (the default) each fragment
gets the labels of its own frame.

Needs only the standard library, numpy and opencv-python-headless 4.x (OpenCV 5 moved the Haar
cascades to the contrib package).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

# Haar cascades are fast enough to run on every key frame on a CPU and ship inside the wheel, so the
# example needs no model download; a real deployment would swap in a DNN detector here.
FACE_CASCADE = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
# Smaller than this, a "face" on a 640x360 frame is nearly always texture; the cascade's default
# minNeighbors (3) fires on busy backgrounds, 5 keeps it to things that look like faces.
MIN_FACE_PIXELS = 40
MIN_NEIGHBORS = 5

# Both detectors hold internal buffers and are not documented as thread-safe, while the HTTP server
# answers on one thread per connection: one lock keeps concurrent webhook calls (several consumers
# pointed at this script) from sharing them at the same time.
_DETECT_LOCK = threading.Lock()
_QR = cv2.QRCodeDetector()


def detect(image: np.ndarray) -> dict[str, str]:
    """The labels for one BGR picture: `faces` (a count) and `qr` (the decoded text), each only when found."""
    labels: dict[str, str] = {}
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    with _DETECT_LOCK:
        faces = FACE_CASCADE.detectMultiScale(
            cv2.equalizeHist(gray), scaleFactor=1.1, minNeighbors=MIN_NEIGHBORS,
            minSize=(MIN_FACE_PIXELS, MIN_FACE_PIXELS),
        )
        # The text is empty when a code-like pattern was found but could not be read: not a detection.
        text, _points, _ = _QR.detectAndDecode(gray)
    if len(faces):
        labels["faces"] = str(len(faces))
    if text:
        labels["qr"] = text
    return labels


def decode_frame(frame: dict) -> np.ndarray | None:
    """The frame's picture as BGR, or None when Framelog could not decode it (Error) or sent RAW."""
    if frame.get("Format") not in ("JPEG", "PNG") or "Data" not in frame:
        return None
    try:
        blob = base64.b64decode(frame["Data"], validate=True)
    except (binascii.Error, ValueError):
        return None
    return cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_COLOR)


def batch_labels(frames: list[dict]) -> dict[str, str]:
    """One label set for a batch, since Framelog attaches it to every fragment of the batch: the
    largest face count of any frame, and the QR texts found (sorted, comma-separated)."""
    faces = 0
    texts: set[str] = set()
    for frame in frames:
        image = decode_frame(frame)
        if image is None:
            continue
        found = detect(image)
        faces = max(faces, int(found.get("faces", 0)))
        if "qr" in found:
            texts.add(found["qr"])
    labels: dict[str, str] = {}
    if faces:
        labels["faces"] = str(faces)
    if texts:
        labels["qr"] = ",".join(sorted(texts))
    return labels


class FramesHandler(BaseHTTPRequestHandler):
    server_version = "framelog-opencv-consumer"

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        if self.path != "/frames":
            self._answer(404, {"error": "POST /frames"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length))
            frames = list(body.get("Frames") or [])
        except (ValueError, AttributeError):
            # 4xx counts as a failed call: Framelog retries, then dead-letters the batch where it can be seen.
            self._answer(400, {"error": "expected Framelog's JSON delivery"})
            return
        started = time.monotonic()
        labels = batch_labels(frames)
        fragments = sorted({f.get("FragmentNumber", "?") for f in frames})
        print(
            f"{body.get('StreamName')}/{body.get('ConsumerName')}: {len(frames)} frame(s) of fragment(s) "
            f"{', '.join(fragments)} in {1000 * (time.monotonic() - started):.0f} ms -> {json.dumps(labels)}",
            flush=True,
        )
        # Always a 2xx with a labels object, even an empty one: any 2xx commits the batch, and an empty
        # object changes no fragment.
        self._answer(200, {"labels": labels})

    def _answer(self, status: int, document: dict) -> None:
        raw = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format, *args) -> None:  # noqa: A002 - one line per batch is printed above
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--listen", default="127.0.0.1:9000",
        help="HOST:PORT to serve POST /frames on (port 0: any free port, printed at start)",
    )
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    if FACE_CASCADE.empty():
        print(f"could not load the face cascade from {cv2.data.haarcascades}", file=sys.stderr)
        return 1
    httpd = ThreadingHTTPServer((host or "127.0.0.1", int(port)), FramesHandler)
    print(f"listening on http://{host or '127.0.0.1'}:{httpd.server_address[1]}/frames", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Writes the upgrade fixture: a data dir made by the Framelog binary at FRAMELOG_BIN holding the
known data set (known_data.py), as media-tests/fixtures/datadir-<layout>.tar.gz plus a JSON manifest.

Run it with a released binary before a change to the on-disk layout, and commit the result; the
upgrade test (test_upgrade_backup.py) opens every committed fixture with the new code.

    FRAMELOG_BIN=... .venv/bin/python media-tests/python/make_upgrade_fixture.py v1 <commit>
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import known_data
from kds_helpers import FramelogServer, framelog_bin

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def main(layout: str, commit: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        server = FramelogServer(framelog_bin(), base / "data", base).start()
        manifest = known_data.write(server.client(), server.kinesisvideo_client())
        code = server.stop()
        assert code == 0, server.log_tail()
        FIXTURES.mkdir(exist_ok=True)
        archive = FIXTURES / f"datadir-{layout}.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(base / "data", arcname="data")
    version = subprocess.run([framelog_bin(), "--version"], capture_output=True, text=True, check=True).stdout.strip()
    manifest = {"layout": layout, "written_by": f"{version} at commit {commit}", **manifest}
    (FIXTURES / f"datadir-{layout}.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {archive} ({archive.stat().st_size} bytes)")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

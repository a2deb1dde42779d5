"""README.md's shell examples run as written: every ```sh block, in order, in one bash session
(`bash -euo pipefail`), against a fresh framelog server process.

The model is the reader's, as the README states it: they paste the blocks in order into one terminal at the
repository root, so a block may use what an earlier one set (the AWS credentials it exports, shell variables, the
`cam` stream). The session starts with no AWS_* variables and an empty HOME, so the README's own `export` is what
makes the AWS CLI work. A block fails the test when it exits non-zero (errexit and pipefail are on); the failure
shows the block as run and its output.

What the test changes around the blocks, and why:
- Endpoint: the server is a private one on a free port (conftest.py's `private_server`, started as every suite
  starts it); `127.0.0.1:4566` in the block text is rewritten to its address, because 4566 may be taken by a
  developer's `make run`.
- Working directory: a scratch "repository root" holding symlinks to the checked-in top-level entries and .venv,
  so `.venv/bin/aws`, `Makefile` and `fuzz/` are where the README says, while what the blocks write (clip.mkv,
  ./data) lands in the scratch directory: never in the checkout, and never on the RocksDB store of a running
  `make run`.
- Commands that cannot run inside a test are stand-ins first on PATH, each checking what it can for real:
  - `ffplay URL` (opens a window): runs `ffprobe -v error` on the URL; it fails unless ffprobe exits 0, prints no
    error and finds a video stream, so the URL must really play.
  - `make run` / `make test` (the opening block: a build and a server that runs until Ctrl-C, or the whole CI):
    runs `make -n` on the same targets, so each target the README names must exist in the Makefile and its
    recipe must expand; nothing is built.
  - `framelog serve ...`: the real binary (FRAMELOG_BIN) with the README's flags, except that --listen gets a free
    loopback port (the README's address is the test server's by then); it must answer on `/` (over HTTPS, trusting
    the CA beside the certificate, when the flags say --tls-cert) and exit 0 on SIGTERM.
  - `cargo install cargo-fuzz` / `cargo fuzz run TARGET`: nothing is installed or fuzzed (each run lasts 10
    minutes, after a sanitizer build of its own); `fuzz run` must be run from the fuzz workspace and name one of
    its [[bin]] targets.
"""

from __future__ import annotations

import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from kds_helpers import REPO_ROOT, framelog_bin
from media_fixtures import tool

README = REPO_ROOT / "README.md"
README_ADDRESS = "127.0.0.1:4566"
BLOCK_TIMEOUT_S = 300.0
SH_BLOCK = re.compile(r"^```sh\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


@dataclass
class Block:
    number: int  # 1-based, in README order
    line: int  # README line of the opening fence
    text: str


def sh_blocks(markdown: str) -> list[Block]:
    return [
        Block(number, markdown.count("\n", 0, match.start()) + 1, match.group(1))
        for number, match in enumerate(SH_BLOCK.finditer(markdown), start=1)
    ]


# ------------------------------------------------------------------------------------------------
# Stand-ins (see the module docstring). Python scripts run by the test's interpreter; the paths of the real
# tools are filled in when they are written, so the stand-ins never find themselves on PATH.
# ------------------------------------------------------------------------------------------------

FFPLAY = '''
import subprocess, sys
args = sys.argv[1:]
if len(args) != 1:
    sys.exit(f"ffplay stand-in: expected one URL, got {args!r}")
proc = subprocess.run([FFPROBE, "-v", "error", "-show_entries", "stream=codec_type", "-of", "csv=p=0", args[0]],
                      capture_output=True, text=True, timeout=120)
sys.stdout.write(proc.stdout)
sys.stderr.write(proc.stderr)
kinds = proc.stdout.split()
if proc.returncode != 0 or proc.stderr.strip() or "video" not in kinds:
    sys.exit(f"ffplay stand-in: ffprobe exited {proc.returncode} and found {kinds}: {args[0]!r} does not play")
print(f"ffplay stand-in: ffprobe read {kinds} from the URL")
'''

MAKE = '''
import subprocess, sys
print("make stand-in: make -n " + " ".join(sys.argv[1:]), flush=True)
sys.exit(subprocess.run([MAKE_BIN, "-n", *sys.argv[1:]]).returncode)
'''

FRAMELOG = '''
import os, signal, socket, ssl, subprocess, sys, time, urllib.request
args = sys.argv[1:]
if args[:1] != ["serve"]:
    os.execv(FRAMELOG_BIN, [FRAMELOG_BIN, *args])
with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
if "--listen" in args:
    args[args.index("--listen") + 1] = f"127.0.0.1:{port}"
else:
    args += ["--listen", f"127.0.0.1:{port}"]
print(f"framelog stand-in: {FRAMELOG_BIN} {' '.join(args)}", flush=True)
# With --tls-cert the answer must come over HTTPS, trusting the ca.pem `framelog cert --dev` wrote
# beside the certificate (as the README tells clients to).
scheme, context = "http", None
if "--tls-cert" in args:
    cert = args[args.index("--tls-cert") + 1]
    scheme, context = "https", ssl.create_default_context(cafile=os.path.join(os.path.dirname(cert), "ca.pem"))
proc = subprocess.Popen([FRAMELOG_BIN, *args])
deadline = time.monotonic() + 30
while True:
    if proc.poll() is not None:
        sys.exit(f"framelog stand-in: the server exited {proc.returncode} before answering")
    try:
        with urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}/", timeout=2, context=context) as response:
            if response.status == 200:
                break
    except OSError:
        pass
    if time.monotonic() > deadline:
        proc.kill()
        sys.exit("framelog stand-in: no answer on / within 30 s")
    time.sleep(0.1)
proc.send_signal(signal.SIGTERM)
code = proc.wait(timeout=30)
print(f"framelog stand-in: answered on /, exited {code} on SIGTERM")
sys.exit(code)
'''

CARGO = '''
import os, sys, tomllib
from pathlib import Path
args = sys.argv[1:]
if args == ["install", "cargo-fuzz"]:
    print("cargo stand-in: not installing cargo-fuzz")
    sys.exit(0)
if args[:2] == ["fuzz", "run"] and len(args) >= 3:
    manifest = Path("Cargo.toml")
    if not manifest.is_file():
        sys.exit(f"cargo stand-in: no Cargo.toml in {os.getcwd()}")
    config = tomllib.loads(manifest.read_text())
    if not config.get("package", {}).get("metadata", {}).get("cargo-fuzz"):
        sys.exit(f"cargo stand-in: {os.getcwd()} is not a cargo-fuzz workspace")
    targets = {b["name"]: b["path"] for b in config.get("bin", [])}
    if args[2] not in targets or not Path(targets[args[2]]).is_file():
        sys.exit(f"cargo stand-in: no fuzz target {args[2]!r} (targets: {sorted(targets)})")
    print(f"cargo stand-in: not fuzzing {args[2]} ({targets[args[2]]} exists)")
    sys.exit(0)
sys.exit(f"cargo stand-in: the README test knows only `install cargo-fuzz` and `fuzz run TARGET`, not {args!r}")
'''


def write_stand_ins(directory: Path) -> None:
    real = {
        "FFPROBE": tool("ffprobe"),
        "MAKE_BIN": shutil.which("make") or pytest.fail("make not found", pytrace=False),
        "FRAMELOG_BIN": framelog_bin(),
    }
    directory.mkdir()
    for name, body in {"ffplay": FFPLAY, "make": MAKE, "framelog": FRAMELOG, "cargo": CARGO}.items():
        constants = "".join(f"{key} = {value!r}\n" for key, value in real.items())
        path = directory / name
        path.write_text(f"#!{sys.executable}\n{constants}{body}")
        path.chmod(0o755)


def scratch_root(directory: Path) -> Path:
    """A directory that looks like the repository root to the blocks: symlinks to its checked-in top-level
    entries and to .venv (see the module docstring)."""
    listed = subprocess.run(["git", "-C", str(REPO_ROOT), "ls-tree", "--name-only", "HEAD"],
                            capture_output=True, text=True, check=True).stdout.split()
    directory.mkdir()
    for name in [*listed, ".venv"]:
        target = REPO_ROOT / name
        if target.exists():
            (directory / name).symlink_to(target)
    return directory


# ------------------------------------------------------------------------------------------------
# One bash session, fed a block at a time
# ------------------------------------------------------------------------------------------------


class Session:
    """`bash -euo pipefail` reading commands from a pipe. Each block is written to a file and sourced with stdin
    from /dev/null (a command reading stdin must not eat the next commands), then a marker line is echoed: the
    marker means the block succeeded; errexit ends the shell on a failing command instead."""

    def __init__(self, cwd: Path, env: dict[str, str], blocks_dir: Path):
        self.blocks_dir = blocks_dir
        blocks_dir.mkdir()
        self.token = uuid.uuid4().hex
        # Own process group: a block's leftovers (a stand-in's server) go with the shell at the end.
        self.proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc", "-euo", "pipefail"],
            cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for raw in self.proc.stdout:
            self.lines.put(raw.decode(errors="replace"))
        self.lines.put(None)

    def run(self, block: Block) -> tuple[str | None, str]:
        """(None, output) when the block succeeded, else (why it failed, output)."""
        path = self.blocks_dir / f"block{block.number}.sh"
        path.write_text(block.text)
        marker = f"{self.token}-{block.number}"
        try:
            self.proc.stdin.write(f". {shlex.quote(str(path))} </dev/null\nprintf '\\n%s\\n' {marker}\n".encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # the shell is gone; reading says how
        output: list[str] = []
        deadline = time.monotonic() + BLOCK_TIMEOUT_S
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return f"still running after {BLOCK_TIMEOUT_S:.0f} s", "".join(output)
            if line is None:
                return f"the shell exited {self.proc.wait()}", "".join(output)
            if line.rstrip("\n") == marker:
                text = "".join(output)
                return None, text[:-1] if text.endswith("\n") else text  # the marker's own leading newline
            output.append(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the group this test started; whatever is left in it
        except ProcessLookupError:
            pass
        self.proc.wait()


# ------------------------------------------------------------------------------------------------
# The test
# ------------------------------------------------------------------------------------------------


def test_every_sh_block_of_the_readme_runs_in_order_in_one_shell(private_server, tmp_path):
    markdown = README.read_text()
    blocks = sh_blocks(markdown)
    assert blocks, "README.md has no ```sh block"
    assert any(README_ADDRESS in b.text for b in blocks), f"no block talks to {README_ADDRESS}: nothing to rewrite"
    address = f"127.0.0.1:{private_server.port}"

    bin_dir = tmp_path / "stand-ins"
    write_stand_ins(bin_dir)
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(HOME=str(home), PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}")
    session = Session(scratch_root(tmp_path / "repo"), env, tmp_path / "blocks")
    try:
        for block in blocks:
            block.text = block.text.replace(README_ADDRESS, address)
            failure, output = session.run(block)
            # Captured: shown with a failure, or with -rP, to see what each stand-in checked.
            print(f"--- README.md block {block.number} (line {block.line}) ---\n{output}")
            if failure:
                pytest.fail(
                    f"README.md block {block.number} (line {block.line}) failed: {failure}\n"
                    f"--- the block as run ({README_ADDRESS} -> {address}) ---\n{block.text}"
                    f"--- its output ---\n{output}\n--- server log ---\n{private_server.log_tail(2000)}",
                    pytrace=False,
                )
    finally:
        session.close()

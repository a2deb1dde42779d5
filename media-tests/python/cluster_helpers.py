"""A Framelog cluster for the tests: scripts/cluster.sh started on a port block and directory of the
test session's own (three NATS servers, SeaweedFS, three Framelog nodes, HAProxy; docs/cluster.md).

`FramelogCluster` offers what the suites use of `FramelogServer` (endpoint, boto3 clients, a clean
stop), plus the faults: kill -9 a node or a NATS server, stop the object store, and start them again.
With FRAMELOG_CLUSTER=1 the shared `server` fixture is a cluster, so the real-client suites run
through HAProxy unchanged (`make test-cluster`).
"""

from __future__ import annotations

import os
import random
import re
import socket
import subprocess
from pathlib import Path

from kds_helpers import REPO_ROOT, FramelogServer, framelog_bin

SCRIPT = REPO_ROOT / "scripts" / "cluster.sh"
# The script uses ports base .. base + 10053 (SeaweedFS's gRPC ports are 10000 above its others).
PORT_SPAN = 50
GRPC_OFFSET = 10000


def _ports_free(base: int) -> bool:
    for port in [*range(base, base + PORT_SPAN), *range(base + GRPC_OFFSET + 40, base + GRPC_OFFSET + PORT_SPAN)]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port_block() -> int:
    for _ in range(200):
        # Below Linux's ephemeral ports (32768 and up), SeaweedFS's gRPC ports (+10000) included,
        # so no outgoing connection can take a port between this check and the servers' binds.
        base = random.randrange(10000, 22000, 100)
        if _ports_free(base):
            return base
    raise RuntimeError("no free block of ports for the cluster")


class FramelogCluster:
    """The whole cluster on one machine; `endpoint` is HAProxy in front of the three nodes."""

    def __init__(self, state_dir: Path, object_min_bytes: int | None = None):
        self.state_dir = state_dir
        self.object_min_bytes = object_min_bytes
        # Where the shared signing secret lies (`iterator-secret`, as in a server's data dir).
        self.data_dir = state_dir
        self.base = free_port_block()
        self.endpoint: str | None = None
        # `FramelogServer`'s client helpers, pointed at HAProxy.
        self._clients = FramelogServer(framelog_bin(), state_dir / "unused", state_dir)

    def _run(self, *args: str, timeout: float = 180) -> str:
        env = dict(
            os.environ,
            FRAMELOG_BIN=framelog_bin(),
            FRAMELOG_CLUSTER_DIR=str(self.state_dir),
            FRAMELOG_CLUSTER_PORT=str(self.base),
        )
        if self.object_min_bytes is not None:
            env["FRAMELOG_CLUSTER_OBJECT_MIN_BYTES"] = str(self.object_min_bytes)
        done = subprocess.run(
            ["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise RuntimeError(f"cluster.sh {' '.join(args)} failed:\n{done.stderr}\n{self.log_tail()}")
        return done.stdout.strip()

    def start(self) -> "FramelogCluster":
        self.endpoint = self._run("up").splitlines()[-1]
        self._clients.port = self.base
        return self

    def node_endpoint(self, node: int) -> str:
        return f"http://127.0.0.1:{self.base + node}"

    def client(self, *args, **kwargs):
        return self._clients.client(*args, **kwargs)

    def kinesisvideo_client(self, *args, **kwargs):
        return self._clients.kinesisvideo_client(*args, **kwargs)

    def _connections_to(self, port: int) -> int:
        listing = subprocess.run(["ss", "-Htn", "state", "established", f"( dport = :{port} )"],
                                 capture_output=True, text=True, check=True).stdout
        return len([line for line in listing.splitlines() if line.strip()])

    def busiest_node(self) -> int:
        """The node with the most client connections (through HAProxy) right now."""
        return max((1, 2, 3), key=lambda node: self._connections_to(self.base + node))

    def busiest_nats(self) -> int:
        """The NATS server the most nodes are connected to right now."""
        return max((1, 2, 3), key=lambda server: self._connections_to(self.base + 10 + server))

    def kill_node(self, node: int) -> None:
        self._run("kill-node", str(node))

    def start_node(self, node: int) -> None:
        self._run("start-node", str(node))

    def kill_nats(self, server: int) -> None:
        self._run("kill-nats", str(server))

    def start_nats(self, server: int) -> None:
        self._run("start-nats", str(server))

    def stop_objects(self) -> None:
        self._run("stop-objects")

    def start_objects(self) -> None:
        self._run("start-objects")

    def log_tail(self, chars: int = 3000) -> str:
        tails = []
        for node in (1, 2, 3):
            path = self.state_dir / "log" / f"node{node}.log"
            if path.exists():
                tails.append(f"--- node{node}\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(tails) or "<no logs>"

    def stop_and_check_clean_exit(self) -> None:
        """Stops everything; every node still running must have shut down cleanly on SIGTERM:
        it logged `stopped cleanly`, and nothing after that line is a warning, an error or a
        panic (the NATS client may still note its connection closing, at INFO)."""
        running = [n for n in (1, 2, 3) if (self.state_dir / "run" / f"node{n}.pid").exists()]
        self._run("down")
        for node in running:
            log = (self.state_dir / "log" / f"node{node}.log").read_text(errors="replace")
            lines = log.splitlines()
            stopped = [i for i, line in enumerate(lines) if "stopped cleanly" in line]
            assert stopped, f"node{node} did not stop cleanly:\n{log[-3000:]}"
            after = [line for line in lines[stopped[-1] + 1 :] if not _is_info(line)]
            assert not after, f"node{node} logged after stopping cleanly:\n" + "\n".join(after)


def _is_info(line: str) -> bool:
    """Whether a log line is an INFO or DEBUG event (the server's format, colours and all)."""
    return re.search(r"\b(INFO|DEBUG|TRACE)\b", line[:80]) is not None


def cluster_mode() -> bool:
    return os.environ.get("FRAMELOG_CLUSTER") == "1"

"""Fixtures of the Python tests: a live graftd, the SDK installed as a user
installs it, and Open Inference Protocol stubs generated from proto/inference."""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

SOURCE = Path(os.environ.get("GRAFT_SOURCE_DIR", Path(__file__).resolve().parents[2]))
SHARED = Path(os.environ.get("GRAFT_SHARED_DIR", SOURCE.parent / "shared"))
GRAFTD = os.environ.get("GRAFTD_BIN", str(SOURCE / "build" / "server" / "graftd"))
IMAGES = SHARED / "images"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Graftd:
    """graftd as a subprocess on fixed free ports (so a restart keeps them)."""

    def __init__(self, root: Path, *flags: str):
        self.data_dir = root / "data"
        self.log = root / "graftd.log"
        self.port = free_port()
        self.http_port = free_port()
        self.flags = list(flags)
        self.proc = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        return (self.data_dir / "admin.token").read_text().split()[0]

    def start(self):
        offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [GRAFTD, "--host=127.0.0.1", f"--port={self.port}", "--metrics_port=-1", "--offline",
                 f"--http_port={self.http_port}", f"--data_dir={self.data_dir}", f"--zoo_dir={SHARED / 'weights'}",
                 *self.flags], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with open(self.log, "rb") as f:
                f.seek(offset)
                if b"graftd listening" in f.read():
                    return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"graftd did not start; its log:\n{self.log.read_text()[-4000:]}")

    def stop(self, sig=signal.SIGTERM) -> int:
        if self.proc is None:
            return -1
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=120)
        self.proc = None
        return code


@pytest.fixture(scope="session")
def graftd(tmp_path_factory):
    g = Graftd(tmp_path_factory.mktemp("graftd")).start()
    yield g
    assert g.stop() == 0, "graftd did not exit cleanly on SIGTERM"


@pytest.fixture(scope="session")
def graft_client(tmp_path_factory):
    """graft_client installed as the README says: pip, in a venv that sees
    Debian's grpcio and protobuf, from a copy of client/python, no network."""
    root = tmp_path_factory.mktemp("sdk")
    shutil.copytree(SOURCE / "client" / "python", root / "src", ignore=shutil.ignore_patterns("build", "*.egg-info"))
    env = dict(os.environ, GRAFT_PROTO_DIR=str(SOURCE / "proto"))
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(root / "venv")], check=True)
    python = str(root / "venv" / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-index", str(root / "src")],
                   check=True, env=env)
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], check=True,
                          capture_output=True, text=True).stdout.strip()
    sys.path.insert(0, site)
    import graft_client

    assert graft_client.__file__.startswith(site), graft_client.__file__
    return graft_client


@pytest.fixture(scope="session")
def oip(tmp_path_factory):
    """grpc_predict_v2_pb2 and _pb2_grpc from proto/inference, as a KServe or Triton user generates them."""
    out = tmp_path_factory.mktemp("oip")
    subprocess.run(["protoc", f"-I{SOURCE / 'proto'}", f"--python_out={out}", f"--grpc_python_out={out}",
                    f"--plugin=protoc-gen-grpc_python={shutil.which('grpc_python_plugin')}",
                    "inference/grpc_predict_v2.proto"], check=True)
    sys.path.insert(0, str(out))
    from inference import grpc_predict_v2_pb2, grpc_predict_v2_pb2_grpc

    return grpc_predict_v2_pb2, grpc_predict_v2_pb2_grpc

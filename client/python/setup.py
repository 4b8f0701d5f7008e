"""Builds graft_client, generating its gRPC stubs from graft's proto/ files.

The stubs are made at install time with protoc and grpc_python_plugin
(Debian's protobuf-compiler and protobuf-compiler-grpc), never committed, so
they always match the server's protocol. `pip install --no-build-isolation
./client/python` needs no network.
"""
import os
import re
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
PROTO_DIR = Path(os.environ.get("GRAFT_PROTO_DIR", HERE.parent.parent / "proto"))
PROTOS = sorted(str(p.relative_to(PROTO_DIR)) for p in (PROTO_DIR / "graft" / "v1").glob("*.proto")) + [
    "grpc/health/v1/health.proto"
]


def generate(out_dir: Path) -> None:
    protoc = shutil.which("protoc")
    plugin = shutil.which("grpc_python_plugin")
    if protoc is None or plugin is None:
        raise SystemExit("graft_client needs protoc and grpc_python_plugin: apt install protobuf-compiler "
                         "protobuf-compiler-grpc")
    gen = out_dir / "graft_client" / "_gen"
    if gen.exists():
        shutil.rmtree(gen)
    gen.mkdir(parents=True)
    subprocess.run([protoc, f"-I{PROTO_DIR}", f"--python_out={gen}", f"--grpc_python_out={gen}",
                    f"--plugin=protoc-gen-grpc_python={plugin}", *PROTOS], check=True)
    # The generated modules import each other as top-level packages (graft.v1,
    # grpc.health.v1, which the real grpc package would shadow): make them ours.
    for path in gen.rglob("*.py"):
        text = path.read_text()
        text = re.sub(r"^from (graft\.v1|grpc\.health\.v1) import", r"from graft_client._gen.\1 import", text,
                      flags=re.M)
        path.write_text(text)
    for d in [gen, *[p for p in gen.rglob("*") if p.is_dir()]]:
        (d / "__init__.py").touch()


class BuildWithStubs(build_py):
    def run(self):
        super().run()
        generate(Path(self.build_lib))


setup(cmdclass={"build_py": BuildWithStubs})

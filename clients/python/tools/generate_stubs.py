"""Generates the protobuf and gRPC modules of `quota_sidecar._proto` from the repository's
`proto/` directory.

Run it after changing a `.proto` file (it needs the `stubs` extra, which pins grpcio-tools so
that the output is reproducible; that grpcio-tools wants protobuf<5, so use an environment
with the oldest supported runtimes):

    python tools/generate_stubs.py

`tests/test_stubs.py` regenerates into a temporary directory and fails when the committed
modules differ.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

# The generator the committed stubs come from: the oldest whose output every supported
# runtime loads (newer ones add a runtime version check that refuses older protobuf).
GRPCIO_TOOLS_VERSION = "1.49.1"

HERE = Path(__file__).resolve().parent
PACKAGE_ROOT = HERE.parent
PROTO_ROOT = PACKAGE_ROOT.parent.parent / "proto"
PROTOS = ("quota/v1/quota.proto", "quota/v1/admin.proto", "quota/v1/events.proto")
# Where the generated modules live inside the package.
TARGET = PACKAGE_ROOT / "quota_sidecar" / "_proto"
PACKAGE_PREFIX = "quota_sidecar._proto."

# protoc writes `from quota.v1 import ...` because the protos import each other as
# `quota/v1/*.proto`; inside the package those modules live under `quota_sidecar._proto`.
_IMPORT = re.compile(r"^from quota\.v1 import ", re.MULTILINE)


def generate(out_dir: Path, proto_root: Path = PROTO_ROOT) -> list[Path]:
    """Writes the generated package (with `__init__.py` files) into `out_dir`; returns the
    files written, relative to `out_dir`."""
    from grpc_tools import protoc  # only needed to generate, not at run time

    with tempfile.TemporaryDirectory() as raw:
        include = Path(protoc.__file__).parent / "_proto"
        args = [
            "protoc",
            f"-I{proto_root}",
            f"-I{include}",
            f"--python_out={raw}",
            f"--pyi_out={raw}",
            f"--grpc_python_out={raw}",
            *PROTOS,
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {proto_root}")
        written = []
        for path in sorted(Path(raw).rglob("*.py*")):
            rel = path.relative_to(raw)
            text = _IMPORT.sub(f"from {PACKAGE_PREFIX}quota.v1 import ", path.read_text())
            dest = out_dir / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(text)
            written.append(rel)
    for package in (Path("."), Path("quota"), Path("quota/v1")):
        init = out_dir / package / "__init__.py"
        init.parent.mkdir(parents=True, exist_ok=True)
        init.write_text('"""Generated from proto/ by tools/generate_stubs.py; do not edit."""\n')
        written.append(package / "__init__.py")
    return sorted(written)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=TARGET, help="output directory")
    args = parser.parse_args()
    for rel in generate(args.out):
        print(args.out / rel)
    return 0


if __name__ == "__main__":
    sys.exit(main())

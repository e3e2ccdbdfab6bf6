#!/usr/bin/env python3
"""Write the names TensorRT's Python bindings define, per version, for the static API check.

TensorRT's libraries do not install on a machine without NVIDIA's own download servers, but
the bindings wheel (`tensorrt-cu12-bindings`, about 1.2 MB) downloads from the package index.
Its `tensorrt.so` cannot be imported without the libraries, yet its string table holds every
Python name it binds (classes, methods, properties, enum members). This script extracts the
identifier-like strings into tests/data/tensorrt_api/<version>.txt.gz, which
tests/test_tensorrt_api.py checks dav2's TensorRT code against.

    python scripts/tensorrt_api_names.py 10.3.0 10.13.0.35 11.4.0.106
"""

import gzip
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "tensorrt_api"
IDENTIFIER = re.compile(rb"(?<![A-Za-z0-9_])[A-Za-z_][A-Za-z0-9_]{2,63}(?![A-Za-z0-9_])")


def binding_names(version: str) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        wheel_spec = f"tensorrt-cu12-bindings=={version}"
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, wheel_spec], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            library = next(n for n in archive.namelist() if n.endswith("tensorrt.so"))
            data = archive.read(library)
    return sorted({match.group().decode() for match in IDENTIFIER.finditer(data)})


def main(versions: list[str]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for version in versions:
        names = binding_names(version)
        path = OUT / f"{version}.txt.gz"
        path.write_bytes(gzip.compress(("\n".join(names) + "\n").encode(), mtime=0))
        print(f"{path}: {len(names)} names")


if __name__ == "__main__":
    main(sys.argv[1:] or ["10.3.0", "10.13.0.35", "11.4.0.106"])

"""Do dav2's extras resolve where their users are? uv's cross-platform resolver answers without those machines.

Each case resolves dav2's runtime requirements plus one extra (read from setup.py's EXTRAS) for a
target Python and platform with `uv pip compile --python-version V --python-platform P`, which
evaluates the environment markers for the target (pip's --platform keeps this machine's
markers). Wheels only (`--only-binary :all:`): what a user installs must not need a compiler,
except TensorRT's own packages (source packages that fetch NVIDIA's libraries at install time)
and cppimport (pure Python, no compiler): SOURCE_PACKAGES.

Targets: a Jetson (JetPack 6: Python 3.10, aarch64, glibc 2.35) and x86-64 Linux desktops and
servers with Python 3.10 and 3.12. Needs only the package index and uv
(`pip install uv`). Prints one line per case; exits 1 when a case in MATRIX fails.

    python scripts/check_resolution.py              # the whole matrix
    python scripts/check_resolution.py --extra jetson --verbose
"""

import argparse
import runpy
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Source packages allowed: TensorRT's own (their install downloads NVIDIA's libraries), and
# cppimport (pure Python, no compiler; Model Optimizer's ONNX modules import it)
SOURCE_PACKAGES = (
    "tensorrt", "tensorrt-cu12", "tensorrt-cu12-libs", "tensorrt-cu13", "tensorrt-cu13-libs", "cppimport",
)  # fmt: skip


@dataclass(frozen=True)
class Target:
    name: str
    python: str
    platform: str


JETSON = Target("cp310 linux-aarch64 (JetPack 6)", "3.10", "aarch64-manylinux_2_35")
X86_310 = Target("cp310 linux-x86-64", "3.10", "x86_64-manylinux_2_28")
X86_312 = Target("cp312 linux-x86-64", "3.12", "x86_64-manylinux_2_28")

# the extras each target's users install ("" is the runtime alone; "a,b" both together, as a GPU
# desktop installs them: torch's CUDA build must agree with TensorRT's CUDA major). `test` holds
# every extra the tests use (3d, viewer, app, batch, plot, oracle, ...); `tensorrt` is trt-cu13
# under its old name.
DESKTOP = ("", "export", "workstation", "trt-cu12", "trt-cu13", "openvino", "test",
           "workstation,trt-cu12", "workstation,trt-cu13",
           "litert", "litert-export", "executorch", "coreml", "test,litert-export,executorch,coreml")  # fmt: skip
# the edge targets on a Jetson or a 64-bit Pi: the LiteRT interpreter and ExecuTorch install; their
# converters mostly do not (litert-converter has x86-64 and macOS wheels only, coremltools no Linux
# ARM wheels), so LiteRT and Core ML artifacts are exported on an x86-64 machine
MATRIX = {
    JETSON: ("", "jetson", "3d", "app", "batch", "plot", "rosbag", "live", "litert", "executorch"),
    X86_310: DESKTOP,
    X86_312: DESKTOP,
}


@dataclass(frozen=True)
class Outcome:
    target: Target
    extra: str
    ok: bool
    pins: list[str]
    error: str


def extras() -> tuple[list[str], dict[str, list[str]]]:
    """setup.py's RUNTIME and EXTRAS, read without running setup()."""
    found = runpy.run_path(str(ROOT / "setup.py"), run_name="dav2_setup")
    return found["RUNTIME"], found["EXTRAS"]


def requirements(known: dict[str, list[str]], extras: str) -> list[str]:
    return [req for name in extras.split(",") if name for req in known[name]]


def uv_command() -> list[str]:
    if shutil.which("uv"):
        return ["uv"]
    probe = subprocess.run([sys.executable, "-m", "uv", "--version"], capture_output=True)
    if probe.returncode == 0:
        return [sys.executable, "-m", "uv"]
    sys.exit("error: this check needs uv (pip install uv)")


def resolve(uv: list[str], target: Target, extra: str, requirements: list[str], folder: Path) -> Outcome:
    spec = folder / f"{target.python}-{target.platform}-{extra.replace(',', '+') or 'runtime'}.in"
    spec.write_text("\n".join(requirements) + "\n")
    command = [
        *uv, "pip", "compile", str(spec), "--quiet", "--no-header", "--no-annotate",
        "--python-version", target.python, "--python-platform", target.platform, "--only-binary", ":all:",
        "--no-python-downloads",  # markers come from the target; no interpreter of that version is needed
    ]  # fmt: skip
    for package in SOURCE_PACKAGES:
        command += ["--no-binary", package]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    pins = [line for line in done.stdout.splitlines() if line and not line.startswith((" ", "#"))]
    error = "\n".join(line for line in done.stderr.splitlines() if line.strip())
    return Outcome(target, extra, done.returncode == 0, pins, error)


def describe(outcome: Outcome, verbose: bool) -> str:
    label = f"{outcome.target.name:32} {outcome.extra or '(runtime)':20}"
    if not outcome.ok:
        return f"FAIL {label} {outcome.error.splitlines()[-1] if outcome.error else ''}" + (
            "\n" + outcome.error if verbose else ""
        )
    key = [pin for pin in outcome.pins if pin.split("==")[0] in KEY_PACKAGES]
    text = f"ok   {label} {len(outcome.pins):3} packages: {', '.join(key)}"
    return text + ("\n    " + "\n    ".join(outcome.pins) if verbose else "")


KEY_PACKAGES = {
    "onnxruntime", "torch", "nvidia-modelopt", "tensorrt-cu12", "tensorrt-cu13", "cuda-bindings", "openvino",
    "nncf", "gradio", "ray", "rerun-sdk", "transformers", "numpy",
}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--extra", action="append", help="only this extra (repeatable; '' = the runtime)")
    parser.add_argument("--verbose", action="store_true", help="print every pin and uv's whole error")
    parser.add_argument("--jobs", type=int, default=4)
    args = parser.parse_args()
    runtime, known = extras()
    uv = uv_command()
    cases = [(t, e) for t, wanted in MATRIX.items() for e in wanted if args.extra is None or e in args.extra]
    unknown = sorted({name for _, e in cases for name in e.split(",") if name and name not in known})
    if unknown:
        sys.exit(f"error: setup.py has no extra {', '.join(unknown)}")
    with tempfile.TemporaryDirectory() as folder, ThreadPoolExecutor(args.jobs) as pool:
        outcomes = list(
            pool.map(lambda case: resolve(uv, *case, [*runtime, *requirements(known, case[1])], Path(folder)), cases)
        )
    for outcome in outcomes:
        print(describe(outcome, args.verbose))
    failed = [o for o in outcomes if not o.ok]
    print(f"{len(outcomes) - len(failed)} of {len(outcomes)} resolve")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

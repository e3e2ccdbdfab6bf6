#!/usr/bin/env python3
"""Where the OpenVINO INT8 error of Depth Anything V2 comes from (issue #15).

For each group G of operations (the attention q·kᵀ inputs, the DPT head, one transformer
block, the MLP linears, ...) the static FP32 IR is quantized twice with the project's recipe
(nncf.quantize, model_type=TRANSFORMER, the same calibration pictures every time):

- all-but-G: everything quantized except G (G in nncf.IgnoredScope), so the error that is
  left tells what is lost elsewhere; the drop from full INT8 is G's share;
- only-G: nothing quantized but G (everything else in the IgnoredScope), G's error alone.

Each variant is scored on the held-out pictures of the calibration set (never calibrated on):
mean AbsRel after scale-and-shift alignment against the FP32 IR compiled with
INFERENCE_PRECISION_HINT=f32. Two compilations of every variant are scored: the default CPU
one (BF16 for the float parts on a CPU with AMX/AVX512-BF16: how it would ship) and one with
the float parts in f32, which separates the INT8 error from the BF16 error. The BF16
compilation is also timed (median of --runs after 3 warm-ups, default thread count). The
quantized-op count is the number of MatMul/Convolution ops with INT8 weights plus the
ScaledDotProductAttention ops with a quantized input.

Every variant's IR is kept under --work and its numbers in --work/results.json, so the
study can be stopped and resumed, and `--retime` re-times saved variants in one interleaved
pass (round-robin, so background load hits them alike).

    python scripts/seeded_checkpoint.py vits relative /tmp/vits.pth   # then export the IR
    python benchmarks/int8_error_sources.py --ir /tmp/q15/depth_anything_v2_vits_518x518.xml \\
        --images /work/shared/images --save benchmarks/results/amd-epyc-2-cores-int8-error-sources.md
    python benchmarks/int8_error_sources.py ... --retime full,except:head   # quiet re-timing
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openvino as ov

from dav2 import accuracy, processing
from dav2.calibration.dataset import CalibrationSet

HW = (518, 518)
F32 = {"INFERENCE_PRECISION_HINT": "f32"}

# Node names of the IR converted from ONNX (`/blocks.3/mlp/fc1/MatMul`, ...). The attention's
# q·kᵀ and attn·v are one ScaledDotProductAttention node per block (`/blocks.N/attn/MatMul_1`);
# NNCF quantizes its q and k inputs and leaves v and the softmax output in float.
# At a static 518x518 input the positional-embedding interpolation is constant-folded into one
# Add (`/Add_24`) that NNCF does not quantize; the group carries the patch-embedding conv.
GROUPS: dict[str, tuple[str, ...]] = {
    "attn-sdpa": (r".*/attn/MatMul_1$",),
    "head": (r".*depth_head.*",),
    "block0": (r"/blocks\.0/.*",),
    "block11": (r"/blocks\.11/.*",),
    "mlp": (r".*/mlp/fc[12]/.*",),
    "qkv-proj": (r".*/attn/(qkv|proj)/.*",),
    **{f"block{i}": (rf"/blocks\.{i}/.*",) for i in range(1, 11)},
    "patch-pos": (r"/patch_embed/.*", r"/Add_24$"),
    # `head` is dav2's keep_head pattern; the head's two ConvTranspose (resize_layers.0/1) are
    # named `ConvolutionBackpropData_NNNN` in the IR and escape it. `head-all` adds them.
    "head-all": (r".*depth_head.*", r"ConvolutionBackpropData_\d+$"),
    "head-reassemble": (r".*depth_head/(projects|resize_layers)\..*", r"ConvolutionBackpropData_\d+$"),
    "head-fusion": (r".*depth_head/(layer\d_rn|refinenet[234])/.*",),
    "head-output": (r".*depth_head/(refinenet1|output_conv\d)/.*",),
    "qkv": (r".*/attn/qkv/.*",),
    "proj": (r".*/attn/proj/.*",),
}
ONLY_SWEEP = {f"block{i}" for i in range(1, 11)} | {"qkv", "proj"}  # no all-but-G run for these

# Mixed-precision candidates: keep these groups in float, quantize the rest.
COMBOS: dict[str, tuple[str, ...]] = {
    "patch+head-all": GROUPS["patch-pos"] + GROUPS["head-all"],
    "patch+head-all+qkv-proj": GROUPS["patch-pos"] + GROUPS["head-all"] + GROUPS["qkv-proj"],
    "patch+head-all+qkv": GROUPS["patch-pos"] + GROUPS["head-all"] + GROUPS["qkv"],
    "patch+head-all+proj": GROUPS["patch-pos"] + GROUPS["head-all"] + GROUPS["proj"],
}


@dataclass
class Variant:
    name: str  # "full", "none", "except:G", "only:G"
    mode: str  # "all", "none", "except", "only"
    patterns: tuple[str, ...] = ()

    @property
    def ignored(self) -> list[str]:
        if self.mode == "except":
            return list(self.patterns)
        if self.mode == "only":  # re.match is anchored: ignore every name none of G's match
            return [f"(?!(?:{'|'.join(self.patterns)})).*"]
        return []


def variants() -> list[Variant]:
    """All variants in priority order (baseline, full, then group by group)."""
    out = [Variant("none", "none"), Variant("full", "all")]
    for group, patterns in GROUPS.items():
        if group not in ONLY_SWEEP:
            out.append(Variant(f"except:{group}", "except", patterns))
        out.append(Variant(f"only:{group}", "only", patterns))
    out += [Variant(f"except:{name}", "except", patterns) for name, patterns in COMBOS.items()]
    return out


def quantize(model: ov.Model, calibration: list[np.ndarray], variant: Variant) -> ov.Model:
    import nncf

    if variant.mode == "none":
        return model
    scope = nncf.IgnoredScope(patterns=variant.ignored, validate=False) if variant.ignored else None
    return nncf.quantize(
        model,
        nncf.Dataset(calibration),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(calibration),
        ignored_scope=scope,
    )


def _reaches(node: ov.Node, targets: set[str], through: set[str], depth: int = 6) -> ov.Node | None:
    """The first node of a type in `targets` found walking up input 0 through `through` ops."""
    for _ in range(depth):
        if node.get_type_name() in targets:
            return node
        if node.get_type_name() not in through or not node.inputs():
            return None
        node = node.input(0).get_source_output().get_node()
    return None


def count_quantized(model: ov.Model) -> int:
    """MatMul/Convolution ops with INT8 weights + SDPA ops with a FakeQuantize input."""
    count = 0
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind in ("MatMul", "Convolution", "ConvolutionBackpropData"):
            source = op.input(1).get_source_output().get_node()
            const = _reaches(source, {"Constant"}, {"Convert", "Subtract", "Multiply", "Reshape", "Transpose"})
            count += const is not None and const.get_output_element_type(0).get_type_name() in ("i8", "u8")
        elif kind == "ScaledDotProductAttention":
            inputs = [op.input(i).get_source_output().get_node() for i in range(3)]
            count += any(_reaches(n, {"FakeQuantize"}, {"Transpose", "Reshape", "Gather"}) for n in inputs)
    return count


def abs_rel(compiled: ov.CompiledModel, held: list[np.ndarray], refs: list[np.ndarray]) -> float:
    return float(np.mean([accuracy.compare(compiled(t)[0][0], r)["abs_rel"] for t, r in zip(held, refs)]))


def median_ms(compiled: ov.CompiledModel, tensor: np.ndarray, runs: int, warmup: int = 3) -> float:
    request = compiled.create_infer_request()
    for _ in range(warmup):
        request.infer({0: tensor})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        request.infer({0: tensor})
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def run_variant(core: ov.Core, model: ov.Model, variant: Variant, data: dict, options) -> dict:
    start = time.time()
    quantized = quantize(model, data["calibration"], variant)
    quantize_s = time.time() - start
    path = Path(options.work) / "ir" / f"{variant.name.replace(':', '_')}.xml"
    if variant.mode != "none":
        ov.save_model(quantized, path)
    bf16 = core.compile_model(quantized, "CPU")
    row = {
        "variant": variant.name,
        "quantized_ops": count_quantized(quantized),
        "abs_rel_bf16": abs_rel(bf16, data["held"], data["refs"]),
        "ms": median_ms(bf16, data["held"][0], options.runs),
        "load": os.getloadavg()[0],
        "quantize_s": quantize_s,
        "ir": str(path) if variant.mode != "none" else options.ir,
    }
    del bf16
    if not options.no_f32:
        row["abs_rel_f32"] = abs_rel(core.compile_model(quantized, "CPU", F32), data["held"], data["refs"])
    return row


def retime(core: ov.Core, results: dict, names: list[str], held: np.ndarray, options) -> dict[str, list[float]]:
    """Interleaved timing of saved variants: --rounds passes of one inference of each (after
    3 warm-ups each), so that background load hits every variant alike."""
    requests = {name: core.compile_model(results[name]["ir"], "CPU").create_infer_request() for name in names}
    for request in requests.values():
        for _ in range(3):
            request.infer({0: held})
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(options.rounds):
        for name, request in requests.items():
            start = time.perf_counter()
            request.infer({0: held})
            times[name].append((time.perf_counter() - start) * 1000.0)
    return times


def load_data(options) -> dict:
    core = ov.Core()
    cal = CalibrationSet(options.images, HW, count=options.calib_count, holdout=options.holdout)
    held = [processing.preprocess(image, fixed_hw=HW) for _, image in cal.holdout_images()]
    reference = core.compile_model(options.ir, "CPU", F32)
    refs = [reference(t)[0][0] for t in held]
    return {
        "calibration": list(cal.tensors()),
        "held": held,
        "refs": refs,
        "held_names": [name for name, _ in cal.holdout_images()],
        "f32_ms": median_ms(reference, held[0], options.runs),
    }


def fmt(row: dict | None, key: str, spec: str = ".4f") -> str:
    return "–" if row is None or key not in row else format(row[key], spec)


def table(results: dict) -> list[str]:
    lines = [
        "| group G | quantized ops (all-but-G / only-G) | AbsRel all-but-G, BF16 (f32) | "
        "AbsRel only-G, BF16 (f32) | ms all-but-G / only-G (sweep, noisy) |",
        "|---|---|---|---|---|",
    ]
    for name in ("none", "full"):
        row = results.get(name)
        if row:
            lines.append(
                f"| *{name}* | {row['quantized_ops']} | {fmt(row, 'abs_rel_bf16')} ({fmt(row, 'abs_rel_f32')}) "
                f"| | {fmt(row, 'ms', '.0f')} |"
            )
    for group in list(GROUPS) + list(COMBOS):
        out, only = results.get(f"except:{group}"), results.get(f"only:{group}")
        if out is None and only is None:
            continue
        label = group if group in GROUPS else f"keep float: {group}"
        lines.append(
            f"| {label} | {fmt(out, 'quantized_ops', 'd')} / {fmt(only, 'quantized_ops', 'd')} "
            f"| {fmt(out, 'abs_rel_bf16')} ({fmt(out, 'abs_rel_f32')}) "
            f"| {fmt(only, 'abs_rel_bf16')} ({fmt(only, 'abs_rel_f32')}) "
            f"| {fmt(out, 'ms', '.0f')} / {fmt(only, 'ms', '.0f')} |"
        )
    return lines


def retime_lines(times: dict[str, list[float]], results: dict) -> list[str]:
    lines = ["| variant | quantized ops | AbsRel BF16 | median ms | 10th-percentile ms (least disturbed) |"]
    lines.append("|---|---|---|---|---|")
    for name, values in times.items():
        row = results[name]
        summary = f"{row['quantized_ops']} | {row['abs_rel_bf16']:.4f}"
        lines.append(f"| {name} | {summary} | {statistics.median(values):.0f} | {np.percentile(values, 10):.0f} |")
    return lines


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ir", default="/tmp/q15/depth_anything_v2_vits_518x518.xml", help="static FP32 IR")
    parser.add_argument("--images", default="/work/shared/images", help="calibration/held-out folder")
    parser.add_argument("--save", default=None, help="Markdown table to write")
    parser.add_argument("--work", default="/tmp/q15/es", help="IRs and results.json of every variant")
    parser.add_argument("--calib-count", type=int, default=12)
    parser.add_argument("--holdout", type=int, default=6)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=40, help="interleaved passes of --retime")
    parser.add_argument("--variants", default="", help="comma-separated variant names (default: all)")
    parser.add_argument("--redo", action="store_true", help="re-run variants already in results.json")
    parser.add_argument("--no-f32", action="store_true", help="skip the f32-float-parts scoring")
    parser.add_argument("--retime", default="", help="comma-separated saved variants to re-time together")
    return parser.parse_args()


def main() -> None:
    options = parse_args()
    work = Path(options.work)
    (work / "ir").mkdir(parents=True, exist_ok=True)
    store = work / "results.json"
    results = json.loads(store.read_text()) if store.is_file() else {}
    core = ov.Core()
    data = load_data(options)
    results["_f32_ms"] = data["f32_ms"]
    wanted = set(filter(None, options.variants.split(",")))
    model = core.read_model(options.ir)
    for variant in variants():
        if (wanted and variant.name not in wanted) or (variant.name in results and not options.redo):
            continue
        results[variant.name] = run_variant(core, model, variant, data, options)
        store.write_text(json.dumps(results, indent=1))
        print(json.dumps(results[variant.name]), flush=True)
    if options.retime:
        names = options.retime.split(",")
        load = os.getloadavg()[0]
        results["_retime"] = retime(core, results, names, data["held"][0], options)
        results["_retime_load"] = [load, os.getloadavg()[0]]
        store.write_text(json.dumps(results, indent=1))
    lines = report(results, data, options)
    print("\n".join(lines))
    if options.save:
        Path(options.save).write_text("\n".join(lines) + "\n")
        Path(options.save).with_suffix(".json").write_text(json.dumps(result_record(results, data), indent=1) + "\n")


def result_record(results: dict, data: dict) -> dict:
    """The run as benchmarks/results/*.json: the single source the docs' tables are made from
    (scripts/results_table.py)."""
    variants = {name: row for name, row in results.items() if not name.startswith("_")}
    retime = {
        name: {"median_ms": statistics.median(values), "p10_ms": float(np.percentile(values, 10))}
        for name, values in results.get("_retime", {}).items()
    }
    return {
        "schema": "int8-error-sources/1",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores ({cpu_name()})",
        "tools": {"openvino": ov.__version__},
        "command": f"python benchmarks/{Path(__file__).name} {' '.join(sys.argv[1:])}",
        "encoder": "vits",
        "size": HW[0],
        "calibration_images": len(data["calibration"]),
        "held_out": data["held_names"],
        "results": variants,
        "retime": retime,
    }


def cpu_name() -> str:
    info = Path("/proc/cpuinfo")
    for line in info.read_text().splitlines() if info.is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def report(results: dict, data: dict, options) -> list[str]:
    lines = [
        "# Sources of the OpenVINO INT8 error (vits, 518x518)",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} cores; OpenVINO {ov.__version__}.",
        f"Command: `python benchmarks/{Path(__file__).name} {' '.join(sys.argv[1:])}`",
        f"AbsRel: mean over the {len(data['held'])} held-out pictures ({', '.join(data['held_names'])}) against "
        f"the FP32 IR in f32 ({data['f32_ms']:.0f} ms); INT8 calibrated on {len(data['calibration'])} other pictures.",
        "",
        *table(results),
    ]
    if "_retime" in results:
        start, end = results.get("_retime_load", [float("nan")] * 2)
        passes = len(next(iter(results["_retime"].values())))
        lines += ["", f"Re-timed together ({passes} interleaved passes; 1-min load average {start:.1f} → {end:.1f}):"]
        lines += ["", *retime_lines(results["_retime"], results)]
    return lines


if __name__ == "__main__":
    main()

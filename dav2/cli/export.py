"""dav2-export: a checkpoint -> ONNX, OpenVINO IR, TensorRT engine, LiteRT, ExecuTorch or Core ML,
checked against PyTorch.

The options come in groups (common.OptionGroup), each parsed into its part of one
`ExportRequest`: the model, the formats (made from `dav2.export.formats.FORMATS`, as are the
checks of which option applies to which format), the INT8/FP16 recipe, TensorRT's engine, the
calibration set and accuracy gate, the graph's shape and input, the check image and output.
Defaults and choices are the library's constants.
"""

from pathlib import Path

import click

from dav2.calibration.nncf import check_float_groups
from dav2.cli.common import (
    CALIBRATION,
    CHECKPOINT_OPTION,
    CONTEXT,
    MAX_ABS_REL_OPTION,
    OptionGroup,
    check_number,
    default_of,
    encoder_option,
    kind_option,
    require_export_tools,
    user_errors,
)
from dav2.errors import Dav2Error
from dav2.export import formats
from dav2.export.context import EXPORTERS, ExportRequest, checked_size
from dav2.export.explicit import DEFAULT_FP32_GROUPS
from dav2.export.gate import OFF
from dav2.export.onnx_int8 import ORT_MODES
from dav2.export.tensorrt import DEFAULT_PRESET, PROFILE_PRESETS
from dav2.metadata import DEFAULT_WORKSPACE_GB
from dav2.vocabulary import ModelKind

MAX_WORKSPACE_GB = 1024


def applies_to(option: str) -> str:
    """' [for --fp16 or --trt fp16]': which formats take an option, from the table."""
    return f" [for {formats.takers(option)}]"


def csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_model(encoder, checkpoint, kind, max_depth) -> dict:
    if kind == ModelKind.RELATIVE and max_depth is not None:  # kind None: the checkpoint decides
        raise Dav2Error("--max-depth applies to --kind metric only")
    return {"encoder": encoder, "checkpoint": checkpoint, "kind": kind, "max_depth": max_depth}


MODEL_OPTIONS = OptionGroup(
    encoder_option(None, " [default: the checkpoint's own (its weights or config.json), else vits]"),
    CHECKPOINT_OPTION,
    kind_option(None, " [default: a transformers model's config.json, else relative]"),
    click.option(
        "--max-depth",
        type=click.FloatRange(0, 1e4, min_open=True),
        default=None,
        help="Metric models only: 20 (Hypersim, indoor) or 80 (Virtual KITTI 2, outdoor). "
        "[default: a transformers model's config.json, else 20]",
    ),
    parser=parse_model,
)


def format_options() -> list:
    """Each row of the format table as its flag(s): a precision choice, or a plain flag with
    precision flags beside it (--onnx, --fp16, --int8)."""
    options = []
    for row in formats.FORMATS:
        choices = click.Choice([p.value for p in row.precisions])
        if row.precision_flags:
            options.append(click.option(row.flag, row.key, is_flag=True, help=row.help))
            for flag in row.precision_flags:
                options.append(click.option(flag, is_flag=True, help=formats.PRECISION_FLAG_HELP[flag]))
        elif row.bare is not None:
            bare = row.bare.value
            options.append(click.option(row.flag, type=choices, is_flag=False, flag_value=bare, help=row.help))
        else:
            options.append(click.option(row.flag, type=choices, default=None, help=row.help))
    return options


FORMAT_OPTIONS = OptionGroup(*format_options(), parser=lambda **values: formats.parse_format_flags(values))


def parse_recipe(ort_int8, litert_int8, keep_head, int8_float, accuracy_control, keep_fp32) -> dict:
    """--keep-head is --int8-float head, spelled as before."""
    groups = csv(int8_float) + (["head"] if keep_head else [])
    return {
        "ort_int8": ort_int8,
        "litert_int8": litert_int8,
        "int8_float": check_float_groups(list(dict.fromkeys(groups))),
        "accuracy_control": accuracy_control,
        "keep_fp32": csv(keep_fp32),
    }


RECIPE_OPTIONS = OptionGroup(
    click.option(
        "--ort-int8",
        type=click.Choice(ORT_MODES),
        default=default_of(ExportRequest, "ort_int8"),
        help="dynamic: INT8 MatMul weights, activations quantized per call (fastest on ONNX Runtime's CPU); "
        "static: ONNX Runtime QDQ calibrated on --calib-dir; qdq: Model Optimizer's explicit Q/DQ graph on "
        "--calib-dir (what --trt int8 builds from; OpenVINO runs it with INT8 kernels)." + applies_to("ort_int8"),
    ),
    click.option(
        "--litert-int8",
        type=click.Choice(formats.LITERT_INT8_MODES),
        default=default_of(ExportRequest, "litert_int8"),
        help="dynamic: INT8 weights, activations quantized per call (no images); static: full-integer INT8 "
        "(int8 activations too, what NPUs and the Edge TPU run) calibrated on --calib-dir." + applies_to("litert_int8"),
    ),
    click.option("--keep-head", is_flag=True, help="The same as --int8-float head (an alias kept for old scripts)."),
    click.option(
        "--int8-float",
        default="",
        help="INT8 made with calibration: comma-separated parts left in float (mixed precision): head, "
        "attention (q·kᵀ), qkv, proj, fc1, fc2, patch_embed, block0 ... block39. docs/int8.md has the table of "
        "INT8 error sources." + applies_to("int8_float"),
    ),
    click.option(
        "--accuracy-control",
        is_flag=True,
        help="INT8 within --max-abs-rel: NNCF's accuracy control ranks the quantized layers by the AbsRel they cost "
        "on validation images and keeps the worst in float until the budget is met (mixed precision)."
        + applies_to("accuracy_control"),
    ),
    click.option(
        "--keep-fp32",
        default="",
        show_default=False,
        help="FP16 graphs: comma-separated groups AutoCast keeps in FP32: layernorm, softmax, attention (the score "
        f"path q·kᵀ, softmax, ·v), head (the head's last convolutions). [default: {','.join(DEFAULT_FP32_GROUPS)}]"
        + applies_to("keep_fp32"),
    ),
    parser=parse_recipe,
)

TENSORRT_OPTIONS = OptionGroup(
    click.option(
        "--workspace",
        "workspace_gb",
        type=click.FloatRange(0, MAX_WORKSPACE_GB, min_open=True),
        default=DEFAULT_WORKSPACE_GB,
        help="TensorRT workspace limit, GiB.",
    ),
    click.option(
        "--profile",
        type=click.Choice(PROFILE_PRESETS),
        default=None,
        help="TensorRT shape profile for dynamic engines: range (1x196x196..1x924x924, tuned for the check image's "
        "size), camera (exactly the --camera-size frames at 518 [default 1280x720]), batch (1-8 x 518x518). "
        f"[default: {DEFAULT_PRESET}]",
    ),
    click.option("--min-shape", default=None, help="TensorRT dynamic: smallest BATCHxHEIGHTxWIDTH, e.g. 1x308x308."),
    click.option("--opt-shape", default=None, help="TensorRT dynamic: shape to tune for, e.g. 1x518x518."),
    click.option("--max-shape", default=None, help="TensorRT dynamic: largest BATCHxHEIGHTxWIDTH, e.g. 1x728x1288."),
    parser=lambda **values: values,
)


def parse_budget(max_abs_rel, **calibration) -> dict:
    """--max-abs-rel -> (max_abs_rel, accuracy_gate): a number for every precision, None for the
    per-precision defaults, 'off' for no gate; the calibration options as they are."""
    if max_abs_rel == OFF:
        return {**calibration, "max_abs_rel": None, "accuracy_gate": False}
    budget = check_number(max_abs_rel, "--max-abs-rel", 0, 1e6, low_open=True)
    return {**calibration, "max_abs_rel": budget, "accuracy_gate": True}


CHECK_OPTIONS = OptionGroup(CALIBRATION, MAX_ABS_REL_OPTION, parser=parse_budget)


def parse_graph(height, width, **rest) -> dict:
    return {"height": checked_size("height", height), "width": checked_size("width", width), **rest}


def size_option(name: str) -> click.Option:
    return click.option(
        f"--{name}",
        type=int,
        default=None,
        help=f"Fixed input {name} (a multiple of 14; makes a static graph). [default: dynamic, traced at 518]",
    )


GRAPH_OPTIONS = OptionGroup(
    size_option("height"),
    size_option("width"),
    click.option(
        "--dynamic",
        is_flag=True,
        help="Dynamic batch, height and width (the default); with --height/--width they set the traced size.",
    ),
    click.option("--static", is_flag=True, help="A fixed input of --height x --width (518x518 when not given)."),
    click.option(
        "--external-data",
        is_flag=True,
        help="ONNX weights in one '<artifact>.data' file beside the graph (always so above ONNX's 2 GB limit).",
    ),
    click.option(
        "--exporter",
        type=click.Choice(EXPORTERS),
        default=default_of(ExportRequest, "exporter"),
        help="torch.onnx exporter; both are checked for parity, torchscript measured as fast and exports faster.",
    ),
    click.option(
        "--input",
        type=click.Choice(formats.INPUTS),
        default=default_of(ExportRequest, "input"),
        help="uint8: the artifact takes the camera's uint8 BGR frame (1, H, W, 3) and does the colour swap, "
        "scaling and ImageNet normalisation itself; the host only copies bytes." + applies_to("input"),
    ),
    click.option(
        "--camera-size",
        default=None,
        help="With --input uint8: WIDTHxHEIGHT of the camera's frames (e.g. 1280x720); the graph then also does "
        "the bicubic resize to the network size, so frames go in as they are captured. With --trt --profile "
        "camera: the frames the engine's profile is built for.",
    ),
    parser=parse_graph,
)

OUTPUT_OPTIONS = OptionGroup(
    click.option(
        "--check-image",
        type=click.Path(exists=True, dir_okay=False),
        default=None,
        help="Image for the parity check (and the accuracy report without --calib-dir). "
        "[default: the built-in sample scene]",
    ),
    click.option(
        "--output",
        type=click.Path(file_okay=False),
        default=str(default_of(ExportRequest, "output")),
        help="Folder for the artifacts, their <artifact>.json metadata and TensorRT caches.",
    ),
    parser=lambda check_image, output: {"check_image": check_image, "output": Path(output)},
)

FROM_OPTION = click.option(
    "--from",
    "from_onnx",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="TensorRT: build the engine from this precision-explicit ONNX artifact (and its sidecar) instead of a "
    "checkpoint; no PyTorch needed (the second step on a Jetson).",
)
GROUPS = (MODEL_OPTIONS, FORMAT_OPTIONS, RECIPE_OPTIONS, TENSORRT_OPTIONS, CHECK_OPTIONS, GRAPH_OPTIONS, OUTPUT_OPTIONS)


def parse_request(values: dict) -> ExportRequest:
    """Every group's part of the request (the values are taken out of `values`)."""
    parts: dict = {}
    for group in GROUPS:
        parts.update(group.parse(values))
    return ExportRequest(**parts)


@click.command(context_settings=CONTEXT)
@MODEL_OPTIONS
@FORMAT_OPTIONS
@RECIPE_OPTIONS
@FROM_OPTION
@TENSORRT_OPTIONS
@CHECK_OPTIONS
@GRAPH_OPTIONS
@OUTPUT_OPTIONS
@user_errors
def export_main(from_onnx, **values):
    """Export a Depth Anything V2 checkpoint to ONNX, OpenVINO IR, a TensorRT engine, LiteRT, ExecuTorch or Core ML.

    Artifacts are dynamic by default: any photo keeps its aspect ratio, exactly as upstream's
    infer_image (TensorRT engines get a shape profile). --height/--width (or --static) make a
    fixed input size instead; images of another aspect ratio are then stretched to it.

    FP32 artifacts must match PyTorch (the export fails otherwise); FP16 and INT8 artifacts
    print an accuracy report (AbsRel, δ1, max abs difference) on held-out images and must
    meet the accuracy gate (--max-abs-rel: a default budget per precision; over it the export
    fails and writes nothing; 'off' only reports).

    \b
    Examples:
      dav2-export --encoder vits --onnx
      dav2-export --encoder vits --trt fp16                       # FP16 ONNX + engine (ONNX only without TensorRT)
      dav2-export --trt fp16 --from models/depth_anything_v2_vits_dynamic_fp16.onnx   # the engine, on the Jetson
      dav2-export --encoder vits --trt int8 --calib-dir photos/
      dav2-export --encoder vits --openvino fp16
      dav2-export --encoder vits --openvino int8 --calib-dir photos/ --max-abs-rel 0.05
      dav2-export --encoder vits --openvino int8 --calib-dir photos/ --max-abs-rel off   # report only
      dav2-export --encoder vits --openvino int8 --calib-dir photos/ --int8-float patch_embed,head,proj
      dav2-export --encoder vits --openvino int8 --calib-dir photos/ --max-abs-rel 0.01 --accuracy-control
      dav2-export --encoder vits --onnx --int8
      dav2-export --encoder vits --onnx --height 518 --width 924      # fixed 16:9 camera input
      dav2-export --encoder vits --openvino int8 --calib-dir photos/ --input uint8 --camera-size 1280x720
      dav2-export --encoder vits --litert fp32 --height 518 --width 518        # .tflite, fixed size
      dav2-export --encoder vits --litert int8 --litert-int8 static --calib-dir photos/ --height 518 --width 518
      dav2-export --encoder vits --executorch int8 --calib-dir photos/ --height 518 --width 518   # .pte, XNNPACK
      dav2-export --encoder vits --coreml fp16 --height 518 --width 518        # .mlpackage, runs on Apple devices
      dav2-export --encoder vitl --kind metric --max-depth 80 --checkpoint m.pth
      dav2-export --checkpoint depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf --onnx
      dav2-export --checkpoint finetune.ckpt --encoder vitb --kind metric --max-depth 20 --onnx

    A transformers model (a folder with config.json + model.safetensors, or a hub repo id)
    brings its encoder, kind and max_depth; a flag that disagrees with its config.json is an
    error. For a .pth/.safetensors file the encoder is read from the weights and the kind is
    relative unless --kind says otherwise. Offline, pass the checkpoint with --checkpoint or
    DAV2_CHECKPOINT=PATH.
    """
    request = parse_request(values)
    if from_onnx is None:
        require_export_tools("dav2-export")
    from dav2.export.pipeline import PendingWork, export_artifacts, export_from_onnx

    try:
        written = export_from_onnx(request, Path(from_onnx)) if from_onnx else export_artifacts(request)
    except PendingWork as exc:
        click.echo("\n".join(map(str, exc.written)))  # what was written here, for the next step elsewhere
        raise
    click.echo("\n".join(map(str, written)))

"""dav2-export: a checkpoint -> ONNX, OpenVINO IR or TensorRT engine, checked against PyTorch."""

from pathlib import Path

import click

from dav2.cli.common import (
    CALIBRATION,
    CHECKPOINT_OPTION,
    CONTEXT,
    MAX_ABS_REL_OPTION,
    check_number,
    encoder_option,
    kind_option,
    require_export_tools,
    user_errors,
)
from dav2.errors import Dav2Error
from dav2.vocabulary import ModelKind, Precision


@click.command(context_settings=CONTEXT)
@encoder_option(None, " [default: the checkpoint's own (its weights or config.json), else vits]")
@CHECKPOINT_OPTION
@kind_option(None, " [default: a transformers model's config.json, else relative]")
@click.option(
    "--max-depth",
    type=click.FloatRange(0, 1e4, min_open=True),
    default=None,
    help="Metric models only: 20 (Hypersim, indoor) or 80 (Virtual KITTI 2, outdoor). "
    "[default: a transformers model's config.json, else 20]",
)
@click.option("--onnx", "to_onnx", is_flag=True, help="Export ONNX (the default target when none is named).")
@click.option("--fp16", is_flag=True, help="ONNX in FP16 (input and output stay FP32).")
@click.option("--int8", is_flag=True, help="ONNX in INT8 for ONNX Runtime on CPUs (see --ort-int8).")
@click.option(
    "--ort-int8",
    type=click.Choice(["dynamic", "static", "qdq"]),
    default="dynamic",
    help="dynamic: INT8 MatMul weights, activations quantized per call (fastest on ONNX Runtime's CPU); "
    "static: ONNX Runtime QDQ calibrated on --calib-dir; qdq: Model Optimizer's explicit Q/DQ graph on --calib-dir "
    "(what --trt int8 builds from; OpenVINO runs it with INT8 kernels).",
)
@click.option(
    "--openvino",
    type=click.Choice(Precision.values()),
    default=None,
    help="OpenVINO IR (.xml/.bin). INT8 is NNCF post-training quantization and needs --calib-dir.",
)
@click.option(
    "--keep-head", is_flag=True, help="OpenVINO INT8: leave the DPT head unquantized (more accurate, slower)."
)
@click.option(
    "--int8-float",
    default="",
    help="INT8 (OpenVINO, and the Q/DQ graph of --trt int8): comma-separated parts left in float (mixed "
    "precision): head, attention (q·kᵀ), qkv, proj, fc1, fc2, patch_embed, block0 ... block39. "
    "docs/int8.md has the table of INT8 error sources.",
)
@click.option(
    "--accuracy-control",
    is_flag=True,
    help="OpenVINO INT8 within --max-abs-rel: NNCF's accuracy control ranks the quantized layers by the AbsRel "
    "they cost on validation images and keeps the worst in float until the budget is met (mixed precision).",
)
@click.option(
    "--trt",
    type=click.Choice(Precision.values()),
    default=None,
    is_flag=False,
    flag_value=Precision.FP16.value,
    help="TensorRT engine (needs TensorRT and an NVIDIA GPU); --trt alone means fp16. INT8 needs --calib-dir.",
)
@click.option(
    "--keep-fp32",
    default="layernorm,softmax,attention,head",
    help="FP16 graphs (--fp16, --trt fp16): comma-separated groups AutoCast keeps in FP32: layernorm, softmax, "
    "attention (the score path q·kᵀ, softmax, ·v), head (the head's last convolutions).",
)
@click.option(
    "--from",
    "from_onnx",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="TensorRT: build the engine from this precision-explicit ONNX artifact (and its sidecar) instead of a "
    "checkpoint; no PyTorch needed (the second step on a Jetson).",
)
@click.option(
    "--workspace", type=click.FloatRange(0, 1024, min_open=True), default=4.0, help="TensorRT workspace limit, GiB."
)
@click.option(
    "--profile",
    type=click.Choice(["range", "camera", "batch"]),
    default=None,
    help="TensorRT shape profile for dynamic engines: range (1x196x196..1x924x924, tuned for the check image's "
    "size), camera (exactly the --camera-size frames at 518 [default 1280x720]), batch (1-8 x 518x518). "
    "[default: range]",
)
@click.option("--min-shape", default=None, help="TensorRT dynamic: smallest BATCHxHEIGHTxWIDTH, e.g. 1x308x308.")
@click.option("--opt-shape", default=None, help="TensorRT dynamic: shape to tune for, e.g. 1x518x518.")
@click.option("--max-shape", default=None, help="TensorRT dynamic: largest BATCHxHEIGHTxWIDTH, e.g. 1x728x1288.")
@CALIBRATION
@MAX_ABS_REL_OPTION
@click.option(
    "--height",
    type=int,
    default=None,
    help="Fixed input height (a multiple of 14; makes a static graph). [default: dynamic, traced at 518]",
)
@click.option(
    "--width",
    type=int,
    default=None,
    help="Fixed input width (a multiple of 14; makes a static graph). [default: dynamic, traced at 518]",
)
@click.option(
    "--dynamic",
    is_flag=True,
    help="Dynamic batch, height and width (the default); with --height/--width they set the traced size.",
)
@click.option("--static", is_flag=True, help="A fixed input of --height x --width (518x518 when not given).")
@click.option(
    "--external-data",
    is_flag=True,
    help="ONNX weights in one '<artifact>.data' file beside the graph (always so above ONNX's 2 GB limit).",
)
@click.option(
    "--exporter",
    type=click.Choice(["torchscript", "dynamo"]),
    default="torchscript",
    help="torch.onnx exporter; both are checked for parity, torchscript measured as fast and exports faster.",
)
@click.option(
    "--check-image",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Image for the parity check (and the accuracy report without --calib-dir). "
    "[default: the built-in sample scene]",
)
@click.option(
    "--input",
    "input_",
    type=click.Choice(["float32", "uint8"]),
    default="float32",
    help="uint8: the artifact takes the camera's uint8 BGR frame (1, H, W, 3) and does the colour swap, "
    "scaling and ImageNet normalisation itself (ONNX and OpenVINO); the host only copies bytes.",
)
@click.option(
    "--camera-size",
    default=None,
    help="With --input uint8: WIDTHxHEIGHT of the camera's frames (e.g. 1280x720); the graph then also does "
    "the bicubic resize to the network size, so frames go in as they are captured. With --trt --profile camera: "
    "the frames the engine's profile is built for.",
)
@click.option(
    "--output",
    type=click.Path(file_okay=False),
    default="models",
    help="Folder for the artifacts, their <artifact>.json metadata and TensorRT caches.",
)
@user_errors
def export_main(
    kind, max_depth, to_onnx, fp16, int8, keep_fp32, workspace, output, height, width, from_onnx, input_, **rest
):
    """Export a Depth Anything V2 checkpoint to ONNX, OpenVINO IR or a TensorRT engine, checked against PyTorch.

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
      dav2-export --encoder vitl --kind metric --max-depth 80 --checkpoint m.pth
      dav2-export --checkpoint depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf --onnx
      dav2-export --checkpoint finetune.ckpt --encoder vitb --kind metric --max-depth 20 --onnx

    A transformers model (a folder with config.json + model.safetensors, or a hub repo id)
    brings its encoder, kind and max_depth; a flag that disagrees with its config.json is an
    error. For a .pth/.safetensors file the encoder is read from the weights and the kind is
    relative unless --kind says otherwise. Offline, pass the checkpoint with --checkpoint or
    DAV2_CHECKPOINT=PATH.
    """
    if kind == ModelKind.RELATIVE and max_depth is not None:  # kind None: the checkpoint decides
        raise Dav2Error("--max-depth applies to --kind metric only")
    if fp16 and int8:
        raise Dav2Error("--fp16 and --int8 are two ONNX precisions; choose one")
    rest["max_abs_rel"], rest["accuracy_gate"] = accuracy_budget(rest["max_abs_rel"])
    if from_onnx is None:
        require_export_tools("dav2-export")
    from dav2.export.context import checked_size
    from dav2.export.pipeline import ExportRequest, PendingWork, export_artifacts, export_from_onnx

    onnx = Precision.FP16 if fp16 else Precision.INT8 if int8 else Precision.FP32 if to_onnx else None
    from dav2.calibration.nncf import check_float_groups

    rest["int8_float"] = check_float_groups([g.strip() for g in rest["int8_float"].split(",") if g.strip()])
    request = ExportRequest(
        kind=kind,
        max_depth=max_depth,
        onnx=onnx,
        keep_fp32=[g.strip() for g in keep_fp32.split(",") if g.strip()],
        workspace_gb=workspace,
        output=Path(output),
        height=checked_size("height", height),
        width=checked_size("width", width),
        input=input_,
        **rest,
    )
    try:
        written = export_from_onnx(request, from_onnx) if from_onnx else export_artifacts(request)
    except PendingWork as exc:
        for artifact in exc.written:  # what was written here, for the next step elsewhere
            click.echo(str(artifact))
        raise
    for artifact in written:
        click.echo(str(artifact))


def accuracy_budget(value: float | str | None) -> tuple[float | None, bool]:
    """--max-abs-rel -> (ExportRequest.max_abs_rel, ExportRequest.accuracy_gate): a number
    for every precision, None for the per-precision defaults, 'off' for no gate."""
    from dav2.export.gate import OFF

    if value == OFF:
        return None, False
    return check_number(value, "--max-abs-rel", 0, 1e6, low_open=True), True

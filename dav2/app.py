"""dav2-app: a small web app (Gradio) to try exported models on your own images and videos.

Upload one image (or several) or a short video, choose an exported model found in a folder
(or a checkpoint, exported to ONNX on first use), and get back the coloured depth, a grey
depth, the 16-bit PNG and the raw .npy as downloads, with the inference time. A slider
compares the image with its depth.

The app is a front end of the runtime, not a second one: each upload is a dav2-run run. The
source, the run policy (dav2.runtime.session.plan_run), the threaded pipeline and the sinks
that write the files are dav2-run's own, so the app's files are byte for byte what
`dav2-run --save` writes for the same model and image.

One model is kept loaded (switching models closes the previous one), runs are serialised
(an edge device has one accelerator), and `serve` closes the model and removes the output
files when the app stops.

Gradio is the seed system's choice and it is kept: uploads, downloads, a comparison slider
and a video player come with it, which a lighter server would have to rebuild.
"""

import shutil
import signal
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dav2 import optional
from dav2.errors import Dav2Error
from dav2.media import scan_folder
from dav2.runtime.backends import open_backend
from dav2.runtime.backends.base import Backend
from dav2.runtime.pipeline import run
from dav2.runtime.session import RunOptions, SaveTarget, plan_run
from dav2.runtime.sinks import MemorySink, Sink, render
from dav2.runtime.sources import CaptureSource, ImageSource, Source
from dav2.vocabulary import SUFFIX_FORMAT, ArtifactFormat

EXPORT_CHOICE = "export the checkpoint to ONNX (dynamic input, first use only)"
MAX_VIDEO_FRAMES = 300
CMAP = "spectral"
# the files each image gives, by --format, named after the image
IMAGE_FILES = {"color": "_depth_color.png", "gray": "_depth_gray.png", "png16": "_depth16.png", "npy": "_depth.npy"}
ARTIFACT_SUFFIXES = {suffix for suffix, fmt in SUFFIX_FORMAT.items() if fmt != ArtifactFormat.PYTORCH}


def find_models(folder: Path) -> list[str]:
    """Exported artifacts below `folder` that a runtime backend can open (not checkpoints)."""
    return [str(path) for path in scan_folder(folder, ARTIFACT_SUFFIXES).files]


@dataclass
class ImageResult:
    """One image's depth, as the page shows it and offers it for download."""

    rgb: np.ndarray  # the image, RGB
    color: np.ndarray  # coloured depth, RGB
    gray: np.ndarray  # grey depth, one channel
    files: list[str]  # the written files: colour, grey, 16-bit PNG, .npy
    timing: str


class DepthService:
    """Runs uploads through dav2-run's runtime with one loaded model; a context manager."""

    def __init__(self, models_dir: Path, checkpoint: str | None = None, encoder: str = "vits"):
        self.models_dir = models_dir
        self.checkpoint = checkpoint
        self.encoder = encoder
        self.outputs = Path(tempfile.mkdtemp(prefix="dav2-app-"))
        self._exported: Path | None = None  # the checkpoint's ONNX export, once made
        self._loaded: tuple[str, Backend] | None = None  # (choice, its open backend)
        self._lock = threading.Lock()  # one run at a time; a model is never closed mid-run

    def choices(self) -> list[str]:
        models = find_models(self.models_dir)
        return models + ([EXPORT_CHOICE] if self.checkpoint else [])

    # --- models ----------------------------------------------------------------------------

    def backend(self, choice: str) -> Backend:
        """The open backend for `choice`, replacing (and closing) the model loaded before.
        Call with the lock held."""
        if not choice:
            raise Dav2Error("choose a model first")
        if choice == EXPORT_CHOICE:
            choice = str(self.export_checkpoint())
        if self._loaded is None or self._loaded[0] != choice:
            self._unload()
            self._loaded = (choice, open_backend(choice))
        return self._loaded[1]

    def _unload(self) -> None:
        if self._loaded is not None:
            _, backend = self._loaded
            self._loaded = None
            backend.close()

    def export_checkpoint(self) -> Path:
        """The checkpoint as a dynamic FP32 ONNX model in the models folder, exported once
        (an export from an earlier session, under dav2-export's name, is reused)."""
        from dav2.export.pipeline import ExportRequest, export_artifacts

        if self._exported is None:
            earlier = self.models_dir / f"depth_anything_v2_{self.encoder}_dynamic.onnx"
            if earlier.is_file():
                self._exported = earlier
            else:
                request = ExportRequest(
                    encoder=self.encoder, checkpoint=self.checkpoint, output=self.models_dir, onnx="fp32"
                )
                self._exported = export_artifacts(request)[0]
        return self._exported

    def close(self) -> None:
        """Close the loaded model and remove the output files (Gradio serves its own copies)."""
        with self._lock:
            self._unload()
        shutil.rmtree(self.outputs, ignore_errors=True)

    def __enter__(self) -> "DepthService":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # --- runs ------------------------------------------------------------------------------

    def _run(
        self,
        source: Source,
        choice: str,
        options: RunOptions,
        extra_sinks: tuple[Sink, ...] = (),
        max_frames: int | None = None,
    ) -> tuple[dict, Backend]:
        """One dav2-run run: the shared plan, the shared pipeline; returns (summary, backend)."""
        with self._lock, source:
            backend = self.backend(choice)
            plan = plan_run(backend, source, options)
            summary = run(
                source,
                backend,
                [*plan.sinks, *extra_sinks],
                input_size=plan.input_size,
                max_frames=max_frames,
                color_range=plan.color_range,
            )
            return summary, backend

    def image_outputs(self, image_path: str, choice: str) -> ImageResult:
        """Depth for one image: pictures, download files and the time it took."""
        path = Path(image_path)
        folder = Path(tempfile.mkdtemp(dir=self.outputs))
        files = [SaveTarget(folder / f"{path.stem}{suffix}", fmt) for fmt, suffix in IMAGE_FILES.items()]
        shown = MemorySink()
        summary, backend = self._run(ImageSource(path), choice, RunOptions(cmap=CMAP, also_save=tuple(files)), (shown,))
        colour = render(shown.frame, shown.depth, "color", CMAP, shown.value_range)
        grey = render(shown.frame, shown.depth, "gray", CMAP, shown.value_range)
        stages = summary["first_frame_stage_ms"]
        return ImageResult(
            rgb=cv2.cvtColor(shown.frame.image, cv2.COLOR_BGR2RGB),
            color=cv2.cvtColor(colour, cv2.COLOR_BGR2RGB),
            gray=grey[:, :, 0],
            files=[str(target.path) for target in files],
            timing=f"{path.name}: inference {stages['inference']:.1f} ms, {summary['first_frame_ms']:.1f} ms "
            f"with reading, pre/post-processing and writing the files ({backend.describe()})",
        )

    def video_outputs(self, video_path: str, choice: str) -> tuple[str, str]:
        """A side-by-side depth video (first MAX_VIDEO_FRAMES frames) and its timing line."""
        target = Path(tempfile.mkdtemp(dir=self.outputs)) / f"{Path(video_path).stem}_depth.mp4"
        source = CaptureSource(str(video_path), "video", Path(video_path).name)
        options = RunOptions(save=target, fmt="side-by-side", cmap=CMAP)
        summary, _ = self._run(source, choice, options, max_frames=MAX_VIDEO_FRAMES)
        timing = (
            f"{summary['frames']} frames: inference {summary['inference_fps'] or 0:.2f} FPS, "
            f"end-to-end {summary['end_to_end_fps'] or 0:.2f} FPS"
        )
        return str(target), timing


def serve(service: DepthService, host: str = "127.0.0.1", port: int = 7860) -> None:
    """Serve the app until Ctrl-C or SIGTERM; then close the model and remove the outputs."""
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (a service manager stopping the app) ends it like Ctrl-C: cleanly
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with service:
        build_app(service).launch(server_name=host, server_port=port)


def build_app(service: DepthService):
    gr = optional.require("gradio", "dav2-app")

    def on_image(image_path, choice):
        if not image_path:
            raise gr.Error("upload an image first")
        try:
            out = service.image_outputs(image_path, choice)
        except Dav2Error as exc:
            raise gr.Error(str(exc)) from exc
        return (out.rgb, out.color), out.gray, out.files, out.timing

    def on_images(paths, choice):
        if not paths:
            raise gr.Error("upload images first")
        gallery, files, lines = [], [], []
        try:
            for path in paths:
                out = service.image_outputs(path, choice)
                gallery.append((out.color, Path(path).name))
                files += out.files
                lines.append(out.timing)
        except Dav2Error as exc:
            raise gr.Error(str(exc)) from exc
        return gallery, files, "\n\n".join(lines)

    def on_video(video_path, choice):
        if not video_path:
            raise gr.Error("upload a video first")
        try:
            return service.video_outputs(video_path, choice)
        except Dav2Error as exc:
            raise gr.Error(str(exc)) from exc

    choices = [(Path(c).name if c != EXPORT_CHOICE else c, c) for c in service.choices()]
    with gr.Blocks(title="dav2: Depth Anything V2") as app:
        gr.Markdown(
            "# Depth Anything V2\nRelative models give disparity (brighter = nearer); metric models give metres."
        )
        model = gr.Dropdown(choices, value=choices[0][1] if choices else None, label="Model", elem_id="model")
        with gr.Tab("Image"):
            with gr.Row():
                image = gr.Image(type="filepath", label="Image", elem_id="input-image")
                slider = gr.ImageSlider(label="Image | depth", elem_id="slider")
            run_image = gr.Button("Estimate depth", variant="primary", elem_id="run-image")
            with gr.Row():
                gray = gr.Image(label="Grey depth", elem_id="depth-gray")
                downloads = gr.File(label="Downloads: colour, grey, 16-bit PNG, .npy", elem_id="downloads")
            timing = gr.Markdown(elem_id="timing")
            run_image.click(on_image, [image, model], [slider, gray, downloads, timing])
        with gr.Tab("Several images"):
            images = gr.File(file_count="multiple", file_types=["image"], label="Images", type="filepath")
            run_images = gr.Button("Estimate depth", variant="primary")
            gallery = gr.Gallery(label="Depth")
            files = gr.File(label="Downloads", file_count="multiple")
            timings = gr.Markdown()
            run_images.click(on_images, [images, model], [gallery, files, timings])
        with gr.Tab("Video"):
            video = gr.Video(label=f"Short video (first {MAX_VIDEO_FRAMES} frames)")
            run_video = gr.Button("Estimate depth", variant="primary")
            video_out = gr.Video(label="Image | depth")
            video_timing = gr.Markdown()
            run_video.click(on_video, [video, model], [video_out, video_timing])
    return app

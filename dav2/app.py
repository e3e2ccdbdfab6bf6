"""dav2-app: a small web app (Gradio) to try exported models on your own images and videos.

Upload one image (or several) or a short video, choose an exported model found in a folder
(or a checkpoint, exported to ONNX on first use), and get back the coloured depth, a grey
depth, the 16-bit PNG and the raw .npy as downloads, with the inference time. A slider
compares the image with its depth. Everything runs through the same runtime backends and the
same pre/post-processing as dav2-run.

Gradio is the seed system's choice and it is kept: uploads, downloads, a comparison slider
and a video player come with it, which a lighter server would have to rebuild.
"""

import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from dav2 import processing
from dav2.errors import Dav2Error
from dav2.runtime.backends import EXTENSIONS, open_backend
from dav2.runtime.sources import read_image

EXPORT_CHOICE = "export the checkpoint to ONNX (518x518, first use only)"
MAX_VIDEO_FRAMES = 300


def find_models(folder: Path) -> list[str]:
    """Exported artifacts below `folder` that a runtime backend can open (not checkpoints)."""
    if not folder.is_dir():
        return []
    found = [p for p in sorted(folder.rglob("*")) if p.suffix.lower() in EXTENSIONS and p.suffix not in (".pth", ".pt")]
    return [str(p) for p in found if not any(part.startswith(".") for part in p.parts)]


class DepthService:
    """Opens each model once and turns uploads into depth files."""

    def __init__(self, models_dir: Path, checkpoint: str | None = None, encoder: str = "vits"):
        self.models_dir = models_dir
        self.checkpoint = checkpoint
        self.encoder = encoder
        self.backends = {}
        self.outputs = Path(tempfile.mkdtemp(prefix="dav2-app-"))

    def choices(self) -> list[str]:
        models = find_models(self.models_dir)
        return models + ([EXPORT_CHOICE] if self.checkpoint else [])

    def backend(self, choice: str):
        if not choice:
            raise Dav2Error("choose a model first")
        if choice == EXPORT_CHOICE:
            choice = str(self.export_checkpoint())
        if choice not in self.backends:
            self.backends[choice] = open_backend(choice)
        return self.backends[choice]

    def export_checkpoint(self) -> Path:
        from dav2.export.pipeline import ExportRequest, export_artifacts

        target = self.models_dir / f"depth_anything_v2_{self.encoder}_518x518.onnx"
        if not target.is_file():
            request = ExportRequest(
                encoder=self.encoder, checkpoint=self.checkpoint, output=self.models_dir, onnx="fp32"
            )
            target = export_artifacts(request)[0]
        return target

    def image_outputs(self, image_path: str, choice: str) -> dict:
        """Depth for one image: pictures, download files and the time it took."""
        image = read_image(Path(image_path))
        if image is None:
            raise Dav2Error(f"cannot read {Path(image_path).name} as an image")
        backend = self.backend(choice)
        start = time.perf_counter()
        depth = backend.predict(image)
        total_ms = (time.perf_counter() - start) * 1000
        folder = Path(tempfile.mkdtemp(dir=self.outputs))
        stem = Path(image_path).stem
        unit = "m" if backend.kind == "metric" else "disparity"
        coloured = processing.colorize(depth, "spectral")
        grey = processing.colorize(depth, "gray")
        files = {
            "color": folder / f"{stem}_depth_color.png",
            "gray": folder / f"{stem}_depth_gray.png",
            "png16": folder / f"{stem}_depth16.png",
            "npy": folder / f"{stem}_depth.npy",
        }
        cv2.imwrite(str(files["color"]), coloured)
        cv2.imwrite(str(files["gray"]), grey)
        files["png16"].write_bytes(processing.encode_png16(depth, unit))
        np.save(files["npy"], depth.astype(np.float32))
        infer_ms = backend.last_timing.get("infer_ms", total_ms)
        return {
            "rgb": cv2.cvtColor(image, cv2.COLOR_BGR2RGB),
            "color": cv2.cvtColor(coloured, cv2.COLOR_BGR2RGB),
            "gray": grey[:, :, 0],
            "files": [str(p) for p in files.values()],
            "timing": f"{Path(image_path).name}: inference {infer_ms:.1f} ms, "
            f"with pre/post-processing {total_ms:.1f} ms ({backend.describe()})",
        }

    def video_outputs(self, video_path: str, choice: str) -> tuple[str, str]:
        """A side-by-side depth video (first MAX_VIDEO_FRAMES frames) and its timing line."""
        from dav2.runtime.pipeline import run
        from dav2.runtime.sinks import VideoSink
        from dav2.runtime.sources import open_source

        backend = self.backend(choice)
        source = open_source(video_path)
        target = Path(tempfile.mkdtemp(dir=self.outputs)) / f"{Path(video_path).stem}_depth.mp4"
        sink = VideoSink(target, "side-by-side", "spectral", source.fps)
        colours = processing.ColorRange(smoothing=0.9)
        summary = run(source, backend, [sink], max_frames=MAX_VIDEO_FRAMES, color_range=colours)
        timing = (
            f"{summary['frames']} frames: inference {summary['inference_fps'] or 0:.2f} FPS, "
            f"end-to-end {summary['end_to_end_fps'] or 0:.2f} FPS"
        )
        return str(target), timing


def build_app(service: DepthService):
    import gradio as gr

    def on_image(image_path, choice):
        if not image_path:
            raise gr.Error("upload an image first")
        try:
            out = service.image_outputs(image_path, choice)
        except Dav2Error as exc:
            raise gr.Error(str(exc)) from exc
        return (out["rgb"], out["color"]), out["gray"], out["files"], out["timing"]

    def on_images(paths, choice):
        if not paths:
            raise gr.Error("upload images first")
        gallery, files, lines = [], [], []
        try:
            for path in paths:
                out = service.image_outputs(path, choice)
                gallery.append((out["color"], Path(path).name))
                files += out["files"]
                lines.append(out["timing"])
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

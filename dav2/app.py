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

A server meets hostile uploads, so the app bounds what one request may cost:
- images pass dav2-run's limits (decoded pixels, aspect ratio, checked from the header before
  decoding, in both image tabs) and a token limit lower than dav2-run's (APP_MAX_TOKENS: a
  request's memory grows with the square of its token count, through attention); at most
  MAX_IMAGES images per request, MAX_VIDEO_FRAMES frames per video;
- ONNX Runtime runs without its memory arena: with it, one large request kept the server at
  its peak memory for good; without it, memory falls back after each request (seen on vits
  in the project's trials; no results file records them);
- one request runs at a time and at most MAX_QUEUE wait (Gradio's queue); more are refused;
- results, uploads and Gradio's copies live in one `dav2-app-<pid>-*` folder under the
  system's temporary folder: results are removed RESULT_KEEP_S after they were made (Gradio
  serves its own copies, kept for DOWNLOAD_KEEP_S), everything when the app stops, and
  folders of earlier apps that died without cleaning up when the next one starts;
- an error is answered with one readable line that names the upload by its file name, never
  by a path on the server.

Scripting: each button is an API endpoint named for what it does (API_NAMES: /depth_image,
/depth_images, /depth_video), so `gradio_client` users can call it by name:
    Client("http://127.0.0.1:7860/").predict(handle_file("photo.jpg"), "models/m.onnx", api_name="/depth_image")
The server prints its own address line instead of Gradio's banner (whose "set share=True"
hint is for notebooks, not something a command-line user can act on).

Gradio is the seed system's choice and it is kept: uploads, downloads, a comparison slider
and a video player come with it, which a lighter server would have to rebuild.
"""

import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dav2 import console, optional
from dav2.errors import Dav2Error
from dav2.media import DEFAULT_LIMITS, ImageLimits, scan_folder
from dav2.runtime.backends import open_backend
from dav2.runtime.backends.base import Backend
from dav2.runtime.fps import RunSummary
from dav2.runtime.pipeline import run
from dav2.runtime.session import RunOptions, SaveTarget, plan_run
from dav2.runtime.sinks import MemorySink, Sink, render
from dav2.runtime.sources import CaptureSource, ImageSource, Source
from dav2.vocabulary import SUFFIX_FORMAT, ArtifactFormat

EXPORT_CHOICE = "export the checkpoint to ONNX (dynamic input, first use only)"
MAX_VIDEO_FRAMES = 300
MAX_IMAGES = 16  # per request of the "several images" tab
APP_MAX_TOKENS = 4_500  # network tokens per image: 518 x 1554 (1:3) at the default input size
MAX_QUEUE = 16  # requests waiting for the one that runs; more are refused by Gradio
RESULT_KEEP_S = 120  # the app's own result files (Gradio has copied them by then)
DOWNLOAD_KEEP_S = 900  # uploads and Gradio's copies of the results, offered for download
SWEEP_EVERY_S = 60
FOLDER_PREFIX = "dav2-app-"
GRADIO_FOLDER = "gradio"  # GRADIO_TEMP_DIR: uploads and Gradio's copies, inside the app's folder
CMAP = RunOptions.cmap  # dav2-run's default colour map
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


# --- the app's temporary files -----------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_orphans(temp_root: Path) -> list[Path]:
    """Remove the folders of earlier apps whose process has gone (killed, crashed): their
    pid is in the folder name. Folders of live apps are left alone."""
    removed = []
    for folder in temp_root.glob(f"{FOLDER_PREFIX}*-*"):
        pid = folder.name.removeprefix(FOLDER_PREFIX).split("-", 1)[0]
        if folder.is_dir() and pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def remove_older_than(folder: Path, seconds: float, keep: frozenset[str] = frozenset()) -> int:
    """Remove the entries of `folder` last changed more than `seconds` ago; return how many."""
    limit = time.time() - seconds
    count = 0
    for entry in list(folder.iterdir()) if folder.is_dir() else []:
        try:
            if entry.name in keep or entry.stat().st_mtime > limit:
                continue
        except OSError:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        count += 1
    return count


# --- what a user is told --------------------------------------------------------------------------

# a directory part of a path ("/tmp/gradio/3f2a/", "models/", "C:\\x\\"), to be dropped from messages
_DIRECTORIES = re.compile(r"(?<![\w])(?:[A-Za-z]:)?[\\/]?(?:[\w.~+-]+[\\/])+(?=[\w.~+-])")


def public_message(exc: BaseException) -> str:
    """One readable line for the page: a Dav2Error's own words without the server's folders;
    anything else (a bug, a library's failure) by its kind only (the server log has the rest)."""
    if isinstance(exc, Dav2Error):
        text = str(exc)
    else:
        text = f"the upload could not be processed ({type(exc).__name__}); the server log has the details"
    return _DIRECTORIES.sub("", " ".join(text.split()))


def answered(work: Callable, *args):
    """`work(*args)`, with every failure turned into a Dav2Error with a public message."""
    try:
        return work(*args)
    except Dav2Error as exc:
        raise Dav2Error(public_message(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - a request must never take the server down
        traceback.print_exc()
        raise Dav2Error(public_message(exc)) from exc


class DepthService:
    """Runs uploads through dav2-run's runtime with one loaded model; a context manager."""

    def __init__(
        self,
        models_dir: Path,
        checkpoint: str | None = None,
        encoder: str = "vits",
        limits: ImageLimits = DEFAULT_LIMITS,
        max_tokens: int = APP_MAX_TOKENS,
    ):
        self.models_dir = models_dir
        self.checkpoint = checkpoint
        self.encoder = encoder
        self.limits = limits
        self.max_tokens = max_tokens
        temp_root = Path(tempfile.gettempdir())
        remove_orphans(temp_root)
        self.folder = Path(tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-", dir=temp_root))
        self.outputs = self.folder / "results"
        self.outputs.mkdir()
        self.gradio_cache = self.folder / GRADIO_FOLDER
        # Gradio reads GRADIO_TEMP_DIR once, when it is imported (its upload folder): set before
        # build_app imports it, so uploads land here and go with the folder at exit (SIGTERM too)
        os.environ["GRADIO_TEMP_DIR"] = str(self.gradio_cache)
        self._stop_sweeping = threading.Event()
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
            self._loaded = (choice, open_backend(choice, memory_arena=False))
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
        """Close the loaded model and remove every file the app made or received."""
        self._stop_sweeping.set()
        with self._lock:
            self._unload()
        shutil.rmtree(self.folder, ignore_errors=True)

    # --- clean-up ----------------------------------------------------------------------------

    def sweep(self) -> None:
        """Remove results older than RESULT_KEEP_S (Gradio serves its own copies of them)."""
        remove_older_than(self.outputs, RESULT_KEEP_S)

    def start_sweeping(self, every_s: float = SWEEP_EVERY_S) -> threading.Thread:
        """Sweep on a schedule until close(), so an idle server does not keep old results."""

        def loop() -> None:
            while not self._stop_sweeping.wait(every_s):
                self.sweep()

        thread = threading.Thread(target=loop, name="dav2-app-sweeper", daemon=True)
        thread.start()
        return thread

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
    ) -> tuple[RunSummary, Backend]:
        """One dav2-run run: the shared plan, passed whole to the shared pipeline (so a video is
        preprocessed as dav2-run preprocesses it); returns (summary, backend)."""
        self.sweep()
        with self._lock, source:
            backend = self.backend(choice)
            plan = plan_run(backend, source, options)
            summary = run(source, backend, plan.with_sinks(*extra_sinks), max_frames=max_frames)
            return summary, backend

    def image_outputs(self, image_path: str, choice: str) -> ImageResult:
        """Depth for one image: pictures, download files and the time it took."""
        path = Path(image_path)
        folder = Path(tempfile.mkdtemp(dir=self.outputs))
        files = [SaveTarget(folder / f"{path.stem}{suffix}", fmt) for fmt, suffix in IMAGE_FILES.items()]
        shown = MemorySink()
        options = RunOptions(cmap=CMAP, also_save=tuple(files), max_tokens=self.max_tokens)
        summary, backend = self._run(ImageSource(path, self.limits), choice, options, (shown,))
        colour = render(shown.frame, shown.depth, "color", CMAP, shown.value_range)
        grey = render(shown.frame, shown.depth, "gray", CMAP, shown.value_range)
        stages = summary.first_frame_stage_ms
        return ImageResult(
            rgb=cv2.cvtColor(shown.frame.image, cv2.COLOR_BGR2RGB),
            color=cv2.cvtColor(colour, cv2.COLOR_BGR2RGB),
            gray=grey[:, :, 0],
            files=[str(target.path) for target in files],
            timing=f"{path.name}: inference {stages['inference']:.1f} ms, {summary.first_frame_ms:.1f} ms "
            f"with reading, pre/post-processing and writing the files ({backend.describe()})",
        )

    def video_outputs(self, video_path: str, choice: str) -> tuple[str, str]:
        """A side-by-side depth video (first MAX_VIDEO_FRAMES frames) and its timing line."""
        target = Path(tempfile.mkdtemp(dir=self.outputs)) / f"{Path(video_path).stem}_depth.mp4"
        source = CaptureSource(str(video_path), "video", Path(video_path).name, limits=self.limits)
        options = RunOptions(save=target, fmt="side-by-side", cmap=CMAP, max_tokens=self.max_tokens)
        summary, _ = self._run(source, choice, options, max_frames=MAX_VIDEO_FRAMES)
        timing = (
            f"{summary.frames} frames: inference {summary.inference_fps or 0:.2f} FPS, "
            f"end-to-end {summary.end_to_end_fps or 0:.2f} FPS"
        )
        return str(target), timing


# --- the requests -----------------------------------------------------------------------------------


def handle_image(service: DepthService, image_path: str | None, choice: str):
    """The Image tab: (image, colour depth) for the slider, grey depth, files, timing."""
    if not image_path:
        raise Dav2Error("upload an image first")
    out = answered(service.image_outputs, image_path, choice)
    return (out.rgb, out.color), out.gray, out.files, out.timing


def handle_images(service: DepthService, paths: list[str] | None, choice: str):
    """The "several images" tab: a gallery, every image's files, one timing line each."""
    if not paths:
        raise Dav2Error("upload images first")
    if len(paths) > MAX_IMAGES:
        raise Dav2Error(f"{len(paths)} images in one request; at most {MAX_IMAGES}")
    gallery, files, lines = [], [], []
    for path in paths:
        out = answered(service.image_outputs, path, choice)
        gallery.append((out.color, Path(path).name))
        files += out.files
        lines.append(out.timing)
    return gallery, files, "\n\n".join(lines)


def handle_video(service: DepthService, video_path: str | None, choice: str):
    if not video_path:
        raise Dav2Error("upload a video first")
    return answered(service.video_outputs, video_path, choice)


# --- the server -------------------------------------------------------------------------------------


def check_port(host: str, port: int) -> None:
    """Dav2Error when `host:port` cannot be listened on (in use, not this machine's address),
    before Gradio tries and fails with its own multi-line error."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise Dav2Error(f"cannot listen on {host}: unknown address ({exc.strerror})") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will
        try:
            probe.bind(address)
        except OSError as exc:
            raise Dav2Error(
                f"cannot listen on {host}:{port} ({exc.strerror}); another program (another dav2-app?) "
                "may be using it: choose another --port"
            ) from None


ANY_PORT_FROM = 7860  # Gradio's own default port: dav2-app's default, and where --port 0 starts looking
API_NAMES = {"image": "depth_image", "images": "depth_images", "video": "depth_video"}  # the endpoints, by tab


def serve(service: DepthService, host: str = "127.0.0.1", port: int = ANY_PORT_FROM) -> None:
    """Serve the app until Ctrl-C or SIGTERM; then close the model and remove every file.

    `port` 0 takes the first free port from ANY_PORT_FROM on, bound by the server itself as it
    starts (Gradio's own search: a port taken meanwhile is skipped), so a script or a test that
    runs several apps asks for 0 and reads the port from the "serving on" line instead of
    probing for a free port and racing others to it. (Gradio cannot listen on the OS's port 0:
    it checks its own address, which would then say port 0.)"""
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (a service manager stopping the app) ends it like Ctrl-C: cleanly
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with service:
        if port:
            check_port(host, port)
        # uploads and Gradio's copies of the results go to the app's own folder (removed at exit)
        os.environ["GRADIO_TEMP_DIR"] = str(service.gradio_cache)  # as set by the service, before any import
        service.start_sweeping()
        page = build_app(service)
        try:
            page.launch(server_name=host, server_port=port or None, quiet=True, prevent_thread_lock=True)
        except OSError as exc:
            raise Dav2Error(f"cannot serve on {host}:{port or 'any port'} ({public_message(exc)})") from None
        console.info(f"serving on http://{host}:{page.server_port}/ (Ctrl-C stops)")
        page.block_thread()  # until Ctrl-C (or SIGTERM, which exits)


def build_app(service: DepthService):
    gr = optional.require("gradio", "dav2-app")

    def shown(handler: Callable) -> Callable:
        """The handler, answering the page with a readable gr.Error instead of a Dav2Error."""

        def on_event(*args):
            try:
                return handler(service, *args)
            except Dav2Error as exc:
                raise gr.Error(str(exc)) from None

        return on_event

    on_image, on_images, on_video = shown(handle_image), shown(handle_images), shown(handle_video)

    # every event shares one slot: one run at a time, whichever tab it comes from
    one_at_a_time = {"concurrency_limit": 1, "concurrency_id": "dav2-model"}
    choices = [(Path(c).name if c != EXPORT_CHOICE else c, c) for c in service.choices()]
    # Gradio removes uploads and its copies of results after DOWNLOAD_KEEP_S
    with gr.Blocks(title="dav2: Depth Anything V2", delete_cache=(SWEEP_EVERY_S, DOWNLOAD_KEEP_S)) as app:
        gr.Markdown(
            "# Depth Anything V2\nRelative models give disparity (brighter = nearer); metric models give metres."
        )
        model = gr.Dropdown(choices, value=choices[0][1] if choices else None, label="Model", elem_id="model")
        with gr.Tab("Image"):
            with gr.Row():
                # image_mode=None: Gradio hands over the uploaded file as it is (it would decode and
                # re-save an image of another mode); dav2 measures it from its header, then decodes
                image = gr.Image(type="filepath", image_mode=None, label="Image", elem_id="input-image")
                slider = gr.ImageSlider(label="Image | depth", elem_id="slider")
            run_image = gr.Button("Estimate depth", variant="primary", elem_id="run-image")
            with gr.Row():
                gray = gr.Image(label="Grey depth", elem_id="depth-gray")
                downloads = gr.File(label="Downloads: colour, grey, 16-bit PNG, .npy", elem_id="downloads")
            timing = gr.Markdown(elem_id="timing")
            run_image.click(
                on_image,
                [image, model],
                [slider, gray, downloads, timing],
                api_name=API_NAMES["image"],
                **one_at_a_time,
            )
        with gr.Tab("Several images"):
            images = gr.File(
                file_count="multiple", file_types=["image"], label=f"Images (at most {MAX_IMAGES})", type="filepath"
            )
            run_images = gr.Button("Estimate depth", variant="primary")
            gallery = gr.Gallery(label="Depth")
            files = gr.File(label="Downloads", file_count="multiple")
            timings = gr.Markdown()
            run_images.click(
                on_images, [images, model], [gallery, files, timings], api_name=API_NAMES["images"], **one_at_a_time
            )
        with gr.Tab("Video"):
            video = gr.Video(label=f"Short video (first {MAX_VIDEO_FRAMES} frames)")
            run_video = gr.Button("Estimate depth", variant="primary")
            video_out = gr.Video(label="Image | depth")
            video_timing = gr.Markdown()
            run_video.click(
                on_video, [video, model], [video_out, video_timing], api_name=API_NAMES["video"], **one_at_a_time
            )
    # one request runs at a time (one model, one accelerator); at most MAX_QUEUE wait
    app.queue(default_concurrency_limit=1, max_size=MAX_QUEUE)
    return app

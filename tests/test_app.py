"""dav2-app: the service behind the page, and the page itself driven by headless Chromium.

The service is a front end of the runtime: its files must be exactly what dav2-run writes,
and every model it opens must be closed (when another replaces it, and when the app
stops). Those tests run everywhere, with a stand-in backend.

The browser test uploads a photo, presses the button, and fetches what the page links to: the
.npy must be exactly what the runtime computes for that photo, and the 16-bit PNG must decode
to it. It skips with the reason where Gradio, Selenium or Chromium/chromedriver cannot be had
(CI installs them: see .ci/run).
"""

import io
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import IMAGES
from dav2 import app, processing
from dav2.app import DepthService, serve
from dav2.errors import Dav2Error
from dav2.runtime.backends import open_backend

pytestmark = pytest.mark.slow  # dav2-app servers in subprocesses, a headless browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")
needs_browser = pytest.mark.skipif(
    not (CHROMIUM and DRIVER), reason="no chromium + chromedriver (apt install chromium chromium-driver)"
)
PHOTO = IMAGES / "demo05.jpg"
FILES = ["demo05_depth.npy", "demo05_depth16.png", "demo05_depth_color.png", "demo05_depth_gray.png"]


# --- the service, with a stand-in backend -----------------------------------------------------


class FakeBackend:
    """What the runtime asks of a backend; depth is the network input's first channel."""

    name, default_input_size, fixed_hw, kind = "fake", 56, None, "relative"

    def __init__(self, path):
        self.path = Path(path)
        self.closed = False

    def infer(self, batch):
        assert not self.closed, "inference on a closed backend"
        return batch[:, 0]

    def describe(self) -> str:
        return f"fake | {self.path.name}"

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def service(tmp_path, monkeypatch):
    opened = []

    def fake_open(path, **options):
        opened.append(FakeBackend(path))
        return opened[-1]

    monkeypatch.setattr(app, "open_backend", fake_open)
    models = tmp_path / "models"
    for name in ("a.onnx", "sub/b.xml", "c.pth", ".hidden.onnx", "a.onnx.json"):
        (models / name).parent.mkdir(parents=True, exist_ok=True)
        (models / name).write_text("")
    with DepthService(models) as depth_service:
        depth_service.opened = opened
        yield depth_service


def files_below(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


def test_the_app_offers_exported_models_only(service):
    assert [Path(choice).name for choice in service.choices()] == ["a.onnx", "b.xml"]


def test_the_page_shows_the_depth_its_files_hold(service):
    """What the page shows (the image, colour and grey depth) is the depth in its .npy file.
    That the files are dav2-run's own, byte for byte, is test_app_parity.py's (real model, real CLI)."""
    model = service.choices()[0]
    result = service.image_outputs(str(PHOTO), model)
    assert sorted(Path(path).name for path in result.files) == FILES
    written = {Path(path).name: Path(path).read_bytes() for path in result.files}
    backend = FakeBackend(model)
    image = cv2.imread(str(PHOTO))
    expected = processing.postprocess(backend.infer(processing.preprocess(image, 56)), image.shape[:2])
    np.testing.assert_array_equal(np.load(io.BytesIO(written[FILES[0]])), expected)
    np.testing.assert_array_equal(result.rgb, image[:, :, ::-1])
    np.testing.assert_array_equal(result.color, processing.colorize(expected, "spectral")[:, :, ::-1])
    np.testing.assert_array_equal(result.gray, processing.normalize_to_uint8(expected))
    assert "inference" in result.timing and "demo05.jpg" in result.timing


def test_models_are_closed_when_replaced_and_when_the_app_stops(service):
    first, second = service.choices()
    service.image_outputs(str(PHOTO), first)
    service.image_outputs(str(PHOTO), first)  # kept loaded: opened once
    assert len(service.opened) == 1 and not service.opened[0].closed
    service.image_outputs(str(PHOTO), second)
    assert [backend.closed for backend in service.opened] == [True, False]
    outputs = service.outputs
    service.close()
    assert all(backend.closed for backend in service.opened) and not outputs.exists()


def test_serve_closes_the_model_when_the_server_stops(service, monkeypatch):
    class Page:
        def launch(self, **kwargs):
            service.image_outputs(str(PHOTO), service.choices()[0])
            raise KeyboardInterrupt  # Ctrl-C

    monkeypatch.setattr(app, "build_app", lambda _: Page())
    with pytest.raises(KeyboardInterrupt):
        serve(service)
    assert service.opened[0].closed and not service.outputs.exists()


def test_an_unreadable_upload_is_one_error_and_leaves_no_files(service, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(Dav2Error, match="cannot read"):
        service.image_outputs(str(broken), service.choices()[0])
    assert files_below(service.outputs) == []
    assert service.opened[0].closed is False  # the model stays loaded for the next upload


def test_video_runs_through_the_runtime(service, tmp_path):
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for index in range(5):
        writer.write(np.full((48, 64, 3), 40 * index, np.uint8))
    writer.release()
    target, timing = service.video_outputs(str(clip), service.choices()[0])
    capture = cv2.VideoCapture(target)
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    assert int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)) == 64 * 2 + 10  # image | gap | depth
    capture.release()
    assert timing.startswith("5 frames")


# --- the page, in headless Chromium -----------------------------------------------------------


SERVING = re.compile(r"serving on (http://127\.0\.0\.1:\d+/) \(Ctrl-C stops\)")


def start_app(models: Path, log_path: Path, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """dav2-app on --port 0 (the server binds a free port itself) and the address it says it
    serves on, once it serves; the address comes from the app's own line, not from a probe."""
    command = [sys.executable, "-c", "from dav2.cli import app_main; app_main()"]
    with open(log_path, "w") as log:
        process = subprocess.Popen([*command, "--models", str(models), "--port", "0"], stdout=log, stderr=log, env=env)
    for _ in range(1200):  # a hang guard: the app reports its address or exits
        found = SERVING.search(log_path.read_text())
        if found:
            return process, found.group(1)
        if process.poll() is not None:
            pytest.fail(f"dav2-app exited: {log_path.read_text()}")
        time.sleep(0.1)
    process.kill()
    pytest.fail(f"dav2-app never said where it serves: {log_path.read_text()}")


@pytest.fixture(scope="module")
def app_server(static_onnx, tmp_path_factory) -> tuple[str, Path]:
    """One dav2-app for the tests that only ask it for depth: its address and its log."""
    pytest.importorskip("gradio", reason="Gradio is not installed (pip install 'dav2[app]')")
    log_path = tmp_path_factory.mktemp("app") / "app.log"
    process, url = start_app(static_onnx.parent, log_path)
    try:
        yield url, log_path
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture
def app_url(app_server) -> str:
    return app_server[0]


@pytest.fixture
def browser():
    pytest.importorskip("selenium", reason="Selenium is not installed (pip install 'dav2[test]')")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def test_the_api_is_named_for_what_it_does_and_scriptable(app_server, static_onnx):
    """gradio_client users call the buttons by name; the console shows dav2's address line, not
    Gradio's "set share=True" hint."""
    pytest.importorskip("gradio_client", reason="gradio_client comes with Gradio (pip install 'dav2[app]')")
    from gradio_client import Client, handle_file

    app_url, log_path = app_server
    client = Client(app_url, verbose=False)
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert sorted(endpoints) == sorted(f"/{name}" for name in app.API_NAMES.values())
    _, _, files, timing = client.predict(handle_file(str(PHOTO)), str(static_onnx), api_name="/depth_image")
    by_name = {Path(path).name: path for path in files}
    assert sorted(by_name) == FILES and "inference" in timing
    with open_backend(static_onnx) as backend:
        expected = backend.predict(cv2.imread(str(PHOTO)))
    np.testing.assert_allclose(np.load(by_name["demo05_depth.npy"]), expected, rtol=1e-5, atol=1e-5)
    log = log_path.read_text()
    assert f"serving on {app_url} (Ctrl-C stops)" in log
    assert "share=True" not in log and "public link" not in log


@needs_browser
def test_upload_a_photo_and_get_its_depth_back(app_url, browser, static_onnx):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 120)
    browser.get(app_url)
    upload = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#input-image input[type=file]"))
    upload.send_keys(str(PHOTO))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#input-image img"))
    browser.find_element(By.ID, "run-image").click()
    links = wait.until(
        lambda d: [a.get_attribute("href") for a in d.find_elements(By.CSS_SELECTOR, "#downloads a")] or None
    )
    names = sorted(link.rsplit("/", 1)[-1] for link in links)
    assert names == FILES
    grey_src = wait.until(
        lambda d: [e.get_attribute("src") for e in d.find_elements(By.CSS_SELECTOR, "#depth-gray img")]
    )
    assert grey_src and grey_src[0]
    assert "inference" in browser.find_element(By.ID, "timing").text

    image = cv2.imread(str(PHOTO))
    with open_backend(static_onnx) as backend:
        expected = backend.predict(image)
    by_name = {link.rsplit("/", 1)[-1]: link for link in links}
    depth = np.load(io.BytesIO(fetch(by_name["demo05_depth.npy"])))
    assert depth.shape == image.shape[:2]
    np.testing.assert_allclose(depth, expected, rtol=1e-5, atol=1e-5)
    decoded, info = processing.decode_png16(fetch(by_name["demo05_depth16.png"]))
    assert info["unit"] == "disparity"
    assert np.abs(decoded - expected).max() <= (expected.max() - expected.min()) / 65535 + 1e-6
    colour = cv2.imdecode(np.frombuffer(fetch(by_name["demo05_depth_color.png"]), np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(colour, processing.colorize(expected, "spectral"))


def test_sigterm_leaves_no_temporary_folder_of_dav2_or_gradio(static_onnx, tmp_path):
    """`docker stop` / systemd send SIGTERM: a server's normal stop, so the app exits cleanly
    (status 0, dav2.app.serve) after removing its own folder and Gradio's uploads and caches,
    which Gradio keeps in GRADIO_TEMP_DIR, read once when gradio is imported (so dav2 sets it
    before that)."""
    pytest.importorskip("gradio_client", reason="gradio_client comes with Gradio (pip install 'dav2[app]')")
    from gradio_client import Client, handle_file

    temp = tmp_path / "tmp"  # the app's temporary folder (TMPDIR): nothing may stay in it
    temp.mkdir()
    log_path = tmp_path / "app.log"
    environment = {**os.environ, "TMPDIR": str(temp)}
    environment.pop("GRADIO_TEMP_DIR", None)
    process, url = start_app(static_onnx.parent, log_path, environment)
    try:
        client = Client(url, verbose=False)
        client.predict(handle_file(str(PHOTO)), str(static_onnx), api_name="/depth_image")
        assert any(temp.iterdir()), "the upload and results should be in the app's temporary folder"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # ONNX Runtime (1.32, Linux) keeps its telemetry session id in $TMPDIR/.ses, shared by every
    # process that uses it and not a temporary file of the app's: the one name allowed to stay
    left = sorted(str(path.relative_to(temp)) for path in temp.rglob("*") if path.name != ".ses")
    assert left == [], left
    assert "Traceback" not in log_path.read_text()

"""dav2-app, for real: the app runs on localhost and headless Chromium drives it.

The browser uploads a photo from ../shared/images, presses the button, and the test fetches
what the page links to: the .npy must be exactly what the runtime computes for that photo,
and the 16-bit PNG must decode to it. Skips with the reason where Gradio, Selenium or
Chromium/chromedriver cannot be had (CI installs them: see .ci/run).
"""

import io
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import cv2
import numpy as np
import pytest

from conftest import IMAGES, requires_shared
from dav2 import processing
from dav2.runtime.backends import open_backend

pytest.importorskip("gradio", reason="Gradio is not installed (pip install 'dav2[app]')")
pytest.importorskip("selenium", reason="Selenium is not installed (pip install 'dav2[test]')")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")
pytestmark = [
    requires_shared,
    pytest.mark.skipif(
        not (CHROMIUM and DRIVER), reason="no chromium + chromedriver (apt install chromium chromium-driver)"
    ),
]
PHOTO = IMAGES / "demo05.jpg"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def app_url(static_onnx, tmp_path):
    port = free_port()
    log = open(tmp_path / "app.log", "w")
    command = [sys.executable, "-c", "from dav2.cli import app_main; app_main()"]
    process = subprocess.Popen(
        [*command, "--models", str(static_onnx.parent), "--port", str(port)], stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(url, timeout=1)
                break
            except OSError:
                if process.poll() is not None:
                    pytest.fail(f"dav2-app exited: {(tmp_path / 'app.log').read_text()}")
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


@pytest.fixture
def browser():
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
    assert names == ["demo05_depth.npy", "demo05_depth16.png", "demo05_depth_color.png", "demo05_depth_gray.png"]
    grey_src = wait.until(
        lambda d: [e.get_attribute("src") for e in d.find_elements(By.CSS_SELECTOR, "#depth-gray img")]
    )
    assert grey_src and grey_src[0]
    assert "inference" in browser.find_element(By.ID, "timing").text

    image = cv2.imread(str(PHOTO))
    expected = open_backend(static_onnx).predict(image)
    by_name = {link.rsplit("/", 1)[-1]: link for link in links}
    depth = np.load(io.BytesIO(fetch(by_name["demo05_depth.npy"])))
    assert depth.shape == image.shape[:2]
    np.testing.assert_allclose(depth, expected, rtol=1e-5, atol=1e-5)
    decoded, info = processing.decode_png16(fetch(by_name["demo05_depth16.png"]))
    assert info["unit"] == "disparity"
    assert np.abs(decoded - expected).max() <= (expected.max() - expected.min()) / 65535 + 1e-6
    colour = cv2.imdecode(np.frombuffer(fetch(by_name["demo05_depth_color.png"]), np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(colour, processing.colorize(expected, "spectral"))

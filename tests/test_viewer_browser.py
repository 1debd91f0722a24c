"""Real-browser test of ``ns-viewer`` on an ff3r run (issue 8, item 1).

The session's shared ``ns-train ff3r-tiny`` run of a tiny generated room (tests/conftest.py), ``ns-viewer``
serves it on 127.0.0.1, and Debian's headless chromium, driven by Playwright through ``executable_path`` (no
browser is ever downloaded), opens the viewer. The test waits for a full-resolution render, types a query into
the model's "Semantic query" text field, checks that this adds a ``relevancy`` entry to the "Output type"
dropdown, switches to it (then to ``segmentation``) and checks from screenshot pixels that the rendered image
changed. Screenshots are kept under pytest's ``tmp_path``.

``scripts/install_browser.sh`` installs chromium and playwright (``scripts/test.sh`` runs it before pytest, so CI
has them); without them the test skips and says so. ns-viewer runs on the CPU as is: nerfstudio's ``eval_setup``
picks "cpu" when CUDA is unavailable.
"""

from __future__ import annotations

import importlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
import pytest
from _commands import TrainedRun
from PIL import Image

pytestmark = pytest.mark.slow

CHROMIUM = Path(os.environ.get("FF3R_CHROMIUM", "/usr/bin/chromium"))  # Debian's; the override is for tests of the skip
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
MAX_RES = 512  # nerfstudio's default "Max res" slider value: the width of a settled (full-resolution) render
QUERY = "sofa"


def _browser_ready() -> bool:
    importlib.invalidate_caches()
    try:
        importlib.import_module("playwright.sync_api")
    except ImportError:
        return False
    return CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)


@pytest.fixture(scope="session")
def browser_installed() -> None:
    """Chromium and playwright, which ``scripts/install_browser.sh`` installs (CI runs it before pytest); a test
    never installs software, so without them it skips and names the script."""
    if not _browser_ready():
        pytest.skip(f"no headless browser ({CHROMIUM} and the playwright package): run bash scripts/install_browser.sh")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class ViewerServer:
    url: str
    log: Path


@pytest.fixture(scope="module")
def viewer(
    browser_installed: None, trained_run: TrainedRun, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ViewerServer]:
    """``ns-viewer`` on the run (trained only where the browser is there to look at it), bound to 127.0.0.1; always terminated (its whole process group) afterwards."""
    port = _free_port()
    log = tmp_path_factory.mktemp("viewer_log") / "ns-viewer.log"
    cmd = [sys.executable, "-m", "nerfstudio.scripts.viewer.run_viewer", "--load-config", str(trained_run.config),
           "--viewer.websocket-host", "127.0.0.1", "--viewer.websocket-port", str(port)]  # fmt: skip
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"ns-viewer exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"ns-viewer did not serve {url} within 120 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield ViewerServer(url, log)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)


# ---------------------------------------------------------------------------------------------- pixels
@dataclass(frozen=True)
class Region:
    """The part of the page where the render shows: the 3D canvas left of the control panel (pixels)."""

    x0: int
    y0: int
    x1: int
    y1: int


def _crop(png: Path, region: Region) -> np.ndarray:
    img = np.asarray(Image.open(png).convert("RGB"), dtype=np.float32)
    return img[region.y0 : region.y1, region.x0 : region.x1]


def _mean_abs_diff(a: np.ndarray, b: np.ndarray, where: Optional[np.ndarray] = None) -> float:
    """Mean absolute difference (0-255 scale), over the pixels ``where`` ([H, W] bool) is set, if given."""
    diff = np.abs(a - b).mean(axis=-1)
    return float(diff[where].mean() if where is not None else diff.mean())


def _render_width(page) -> int:
    """Width of the latest render, from the panel's "Resolution: WxHpx" line."""
    text = page.get_by_text(re.compile(r"Resolution: \d+")).first.inner_text()
    match = re.search(r"Resolution: (\d+)", text)
    assert match is not None, text
    return int(match.group(1))


def _wait_settled(
    page, path: Path, region: Region, accept: Callable[[np.ndarray], bool], timeout: float = 60.0
) -> np.ndarray:
    """Screenshot until the render region satisfies ``accept``, comes from a full-resolution render (nerfstudio
    first sends low-resolution frames after every change) and two consecutive shots agree."""
    deadline = time.monotonic() + timeout
    prev: Optional[np.ndarray] = None
    while True:
        full = _render_width(page) == MAX_RES
        page.screenshot(path=str(path))
        full = full and _render_width(page) == MAX_RES
        cur = _crop(path, region)
        if prev is not None and full and accept(cur) and _mean_abs_diff(cur, prev) < 0.5:
            return cur
        if time.monotonic() > deadline:
            raise AssertionError(f"the render did not settle as expected within {timeout:.0f} s; last shot: {path}")
        prev = cur if full else None
        time.sleep(1.0)


def _foreground(img: np.ndarray) -> np.ndarray:
    """[H, W] bool: pixels that are not the black background."""
    return img.max(axis=-1) > 20


def _covered(img: np.ndarray) -> float:
    """Fraction of pixels that are not the black background."""
    return float(_foreground(img).mean())


# ---------------------------------------------------------------------------------------------- the page
def _render_region(page) -> Region:
    """The largest canvas (the render's), less the control panel on its right and the axes gizmo at the bottom
    (the same in every shot)."""
    boxes = [b for b in (c.bounding_box() for c in page.locator("canvas").all()) if b is not None]
    canvas = max(boxes, key=lambda b: b["width"] * b["height"])
    panel_left = page.get_by_role("button", name=re.compile("Pause Training|Resume Training")).bounding_box()["x"]
    bottom = canvas["y"] + canvas["height"] - 70
    region = Region(int(canvas["x"]), int(canvas["y"]), int(panel_left) - 20, int(bottom))
    assert region.x1 - region.x0 > 300 and region.y1 - region.y0 > 300, f"render region too small: {region}"
    return region


def _output_options(page) -> list[str]:
    """The entries of the "Output type" dropdown (opened, read, closed)."""
    page.get_by_label("Output type").click()
    options = [o.inner_text() for o in page.get_by_role("option").all()]
    page.keyboard.press("Escape")
    return options


def _select_output(page, name: str, region: Region) -> None:
    output = page.get_by_label("Output type")
    output.click()
    page.get_by_role("option", name=name, exact=True).click()
    assert output.input_value() == name
    page.mouse.move(region.x0 + 10, region.y0 + 10)  # park the mouse: no tooltip over the render


def _enter_query(page, text: str) -> None:
    """Type into the model's "Semantic query" ViewerText (its ``<label for>`` does not point at the input)."""
    label = page.locator("label", has_text="Semantic query").first
    field = label.locator("xpath=ancestor::div[.//input][1]").locator("input").first
    field.scroll_into_view_if_needed()
    field.fill(text)
    field.press("Enter")


# ---------------------------------------------------------------------------------------------- the test
def test_viewer_query_adds_relevancy_and_changes_the_render(
    browser_installed: None, viewer: ViewerServer, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a fresh --user-data-dir
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1000, "height": 700},
        )
        try:
            page = context.new_page()
            page.set_default_timeout(30_000)
            # Only the viewer on 127.0.0.1 may be reached (its page links a logo on docs.nerf.studio).
            local = "http://127.0.0.1:"
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(local) else route.abort())
            page.goto(viewer.url)
            page.get_by_text("Connected", exact=True).wait_for()
            region = _render_region(page)

            # 1. a full-resolution rgb render from the default camera, then dollied out so that the whole room
            # is in view (the default camera clips it); the change shows that the viewer follows the camera.
            first = _wait_settled(page, tmp_path / "0_rgb_default.png", region, lambda img: _covered(img) > 0.02)
            page.mouse.move((region.x0 + region.x1) / 2, (region.y0 + region.y1) / 2)
            for _ in range(10):
                page.mouse.wheel(0, 300)
                time.sleep(0.2)
            moved = lambda img: _covered(img) > 0.02 and _mean_abs_diff(img, first) > 2.0  # noqa: E731
            rgb = _wait_settled(page, tmp_path / "1_rgb.png", region, moved)

            assert page.get_by_label("Output type").input_value() == "rgb"
            options = _output_options(page)
            for name in ("rgb", "depth", "accumulation", "feature", "confidence", "segmentation"):
                assert name in options, options
            assert "relevancy" not in options, options  # only a query adds it

            # 2. a query: the next render carries a relevancy output, and the dropdown lists it.
            _enter_query(page, QUERY)
            deadline = time.monotonic() + 60
            while "relevancy" not in (options := _output_options(page)):
                assert time.monotonic() < deadline, f"no 'relevancy' output 60 s after the query: {options}"
                time.sleep(1.0)
            _select_output(page, "relevancy", region)
            changed = lambda img: _mean_abs_diff(img, rgb) > 20.0  # noqa: E731
            relevancy = _wait_settled(page, tmp_path / "2_relevancy.png", region, changed)
            # The relevancy map is shown through a colormap (turbo): no pixel stays the black rgb background.
            assert _covered(relevancy) > 0.9, _covered(relevancy)

            # 3. the class segmentation: class colours replace the room's shading where the room is drawn.
            _select_output(page, "segmentation", region)
            recoloured = lambda img: (  # noqa: E731
                _mean_abs_diff(img, rgb, _foreground(rgb)) > 20.0 and _mean_abs_diff(img, relevancy) > 20.0
            )
            segmentation = _wait_settled(page, tmp_path / "3_segmentation.png", region, recoloured)
            # Only the room is coloured (the background stays black), so it covers what rgb covers.
            assert abs(_covered(segmentation) - _covered(rgb)) < 0.1 * _covered(rgb) + 0.01
        finally:
            context.close()
    assert "Traceback" not in viewer.log.read_text(), viewer.log.read_text()[-3000:]

"""`make explore` in a real browser: Voila serves the explorers of a quick build on a free
loopback port, and headless Chromium (Selenium) moves a slider and changes dropdowns.

Needs Debian's ``chromium`` and ``chromium-driver`` (``make browser`` installs them); without
them the test is skipped and says so. Set ``DISCLATENT_SCREENSHOTS=<folder>`` to keep a
screenshot of each explorer there (otherwise they go to the test's temporary folder), and
``DISCLATENT_EXPLORE_BUILD=<build folder>`` to drive the app of an existing build (e.g. the
default profile's ``_build``) instead of a fresh quick one; run with ``-s`` to see the times.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from disclatent.app.explore import TABS as TAB_TITLES
from disclatent.app.serve import check_inputs, voila_command, write_app_notebook

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM and DRIVER),
        reason="headless Chromium is not installed: run `make browser` "
        "(apt-get install chromium chromium-driver) to test the app in a browser",
    ),
]
OPEN_BUDGET_S = 10.0  # the app shows its explorers within this after the server starts
RENDER_BUDGET_S = 1.0  # a slider move re-renders within this


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def app(request):
    """Voila serving the quick book built for this session or, to measure another build, the
    one named by ``DISCLATENT_EXPLORE_BUILD`` (profile ``DISCLATENT_EXPLORE_PROFILE``)."""
    build_dir, profile = os.environ.get("DISCLATENT_EXPLORE_BUILD"), "quick"
    if build_dir:
        profile = os.environ.get("DISCLATENT_EXPLORE_PROFILE", "default")
    else:
        build_dir, run = request.getfixturevalue("quick_book")
        assert run.returncode == 0, run.stderr[-3000:]
    paths = check_inputs(profile, build_dir)
    notebook = write_app_notebook(paths)
    port = free_port()
    start = time.perf_counter()
    server = subprocess.Popen(
        voila_command(notebook, port), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        yield port, start
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        opts.add_argument(arg)
    opts.add_argument("--window-size=1300,1100")
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield driver
    driver.quit()


def _wait(condition, timeout: float, what: str, step: float = 0.05):
    end = time.perf_counter() + timeout
    while time.perf_counter() < end:
        try:
            value = condition()
        except Exception:  # noqa: BLE001 (the page is still loading)
            value = None
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _panel(driver, title: str):
    """Click the tab called ``title``; its (visible) panel."""
    from selenium.webdriver.common.by import By

    tabs = driver.find_elements(By.CSS_SELECTOR, ".lm-TabBar-tab")
    tab = next(t for t in tabs if t.text.strip() == title)
    tab.click()
    panels = driver.find_elements(By.CSS_SELECTOR, ".widget-tab-contents > .lm-Widget")
    return next(p for p in panels if p.is_displayed())


def _image(panel) -> str:
    from selenium.webdriver.common.by import By

    imgs = panel.find_elements(By.CSS_SELECTOR, ".widget-output img")
    return imgs[-1].get_attribute("src") if imgs else ""


def _numbers(panel) -> str:
    from selenium.webdriver.common.by import By

    return panel.find_element(By.CSS_SELECTOR, ".explorer-numbers").text


def _changed(
    panel, image: str, numbers: str | None, what: str, start: float, timeout: float = 30.0
) -> float:
    """Seconds from ``start`` until the figure (and the numbers) differ from these."""
    _wait(lambda: _image(panel) not in ("", image), timeout, f"the figure to change ({what})")
    if numbers is not None:
        _wait(lambda: _numbers(panel) != numbers, timeout, f"the numbers to change ({what})")
    return time.perf_counter() - start


def _shot(driver, name: str, tmp_path: Path) -> Path:
    folder = Path(os.environ.get("DISCLATENT_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"explore-{name}.png"
    driver.save_screenshot(str(path))
    return path


def test_the_explorers_answer_a_person_in_a_browser(app, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    port, started = app
    _wait(lambda: listening(port), 60, "the server")
    browser.get(f"http://127.0.0.1:{port}/")
    _wait(lambda: _image(_panel(browser, TAB_TITLES[0])), 120, "the latent explorer's figure")
    opened = time.perf_counter() - started
    page = browser.page_source
    assert "build_app" not in page and "load_inputs" not in page  # no code shown
    shots = {}

    # latent explorer: one arrow key on the first slider re-renders the decoded disc
    panel = _panel(browser, TAB_TITLES[0])
    shots["latent"] = _shot(browser, "latent", tmp_path)
    image, numbers = _image(panel), _numbers(panel)
    assert numbers.startswith("decoded disc: height (mm):")
    handle = panel.find_elements(By.CSS_SELECTOR, ".noUi-handle")[0]
    start = time.perf_counter()
    handle.click()
    handle.send_keys(Keys.ARROW_RIGHT)  # one step up
    slider_s = _changed(panel, image, numbers, "latent slider", start)

    # cohort browser: another series shows another spine
    panel = _panel(browser, TAB_TITLES[1])
    _wait(lambda: _image(panel), 30, "the cohort browser's figure")
    shots["cohort"] = _shot(browser, "cohort", tmp_path)
    image = _image(panel)
    series = Select(panel.find_elements(By.TAG_NAME, "select")[0])
    start = time.perf_counter()
    series.select_by_index(len(series.options) - 1)
    series_s = _changed(panel, image, None, "series dropdown", start)

    # prediction explorer: another feature set is cross-validated; the threshold re-scores
    panel = _panel(browser, TAB_TITLES[2])
    _wait(lambda: _image(panel), 60, "the prediction explorer's figure")
    shots["prediction"] = _shot(browser, "prediction", tmp_path)
    image, numbers = _image(panel), _numbers(panel)
    assert numbers.startswith("AUC ") and "F1 at 0.50" in numbers
    start = time.perf_counter()
    Select(panel.find_elements(By.TAG_NAME, "select")[1]).select_by_visible_text("height + level")
    refit_s = _changed(panel, image, numbers, "feature-set dropdown", start)
    image, numbers = _image(panel), _numbers(panel)
    handles = panel.find_elements(By.CSS_SELECTOR, ".noUi-handle")
    threshold = handles[0]  # the first slider of the left column
    start = time.perf_counter()
    threshold.click()
    threshold.send_keys(Keys.ARROW_LEFT)
    threshold_s = _changed(panel, image, numbers, "threshold slider", start)
    assert "F1 at 0.45" in _numbers(panel)

    print(
        f"\napp open {opened:.1f} s after the server started (budget {OPEN_BUDGET_S:.0f} s); "
        f"latent slider re-render {slider_s:.2f} s, threshold slider {threshold_s:.2f} s "
        f"(budget {RENDER_BUDGET_S:.0f} s); another series {series_s:.2f} s; new feature set "
        "cross-validated and drawn in "
        f"{refit_s:.2f} s; screenshots: {', '.join(str(p) for p in shots.values())}"
    )
    for path in shots.values():
        assert path.stat().st_size > 10_000  # a rendered page, not a blank one

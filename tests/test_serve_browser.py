"""The web page in a real browser: Debian's Chromium driven by Selenium (headless) against a real uvicorn server
on 127.0.0.1. Upload a clip, see the right label and the segment strip, take a screenshot."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import tone, write_audio

pytest.importorskip("fastapi")
webdriver = pytest.importorskip("selenium.webdriver")
import uvicorn  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from audioclf.model.folder import load_model  # noqa: E402
from audioclf.serve.app import create_app  # noqa: E402
from audioclf.serve.options import ServeOptions  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="no Chromium here: apt-get install chromium chromium-driver (.ci/run does) for the browser test",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def live_server(tone_model: tuple[Path, Path]) -> Iterator[str]:
    model, cache = tone_model
    port = free_port()
    app = create_app(load_model(model), ServeOptions(port=port, cache_dir=cache))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@needs_chromium
def test_the_page_labels_an_uploaded_clip(live_server: str, tmp_path: Path) -> None:
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1000,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(DRIVER)), options=options)
    try:
        driver.get(live_server + "/")
        WebDriverWait(driver, 20).until(expected_conditions.text_to_be_present_in_element((By.ID, "model"), "labels"))
        assert "high, low, mid" in driver.find_element(By.ID, "model").text
        clip = write_audio(tmp_path / "low-tone.wav", tone(220 * 1.02, 2.0, noise=0.05), 16_000)
        driver.find_element(By.ID, "files").send_keys(str(clip))
        card = WebDriverWait(driver, 60).until(
            expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "#results .card"))
        )
        assert card.get_attribute("data-source") == "low-tone.wav", card.text
        assert not card.find_elements(By.CSS_SELECTOR, ".error"), card.text
        assert card.find_element(By.CSS_SELECTOR, ".label").text == "low"
        assert len(card.find_elements(By.CSS_SELECTOR, ".bar")) == 3  # the top-3 bars
        strip = card.find_element(By.CSS_SELECTOR, ".strip")
        assert len(strip.find_elements(By.TAG_NAME, "span")) >= 1  # the segment timeline is drawn
        assert "low" in strip.get_attribute("aria-label")
        assert driver.save_screenshot(str(tmp_path / "page.png"))
        assert (tmp_path / "page.png").stat().st_size > 10_000
    finally:
        driver.quit()

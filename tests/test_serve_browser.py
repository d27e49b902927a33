"""The web page in a real browser: Debian's Chromium driven by Selenium (headless) against a real uvicorn server
on 127.0.0.1. Upload a clip, see the right label and the segment strip, take a screenshot."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import chromium, needs_chromium, serving
from conftest import tone, write_audio

pytest.importorskip("fastapi")
pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from audioclf.model.folder import load_model
from audioclf.serve.app import create_app
from audioclf.serve.options import ServeOptions


@pytest.fixture()
def live_server(tone_model: tuple[Path, Path]) -> Iterator[str]:
    model, cache = tone_model
    with serving(create_app(load_model(model), ServeOptions(cache_dir=cache))) as url:
        yield url


@needs_chromium
def test_the_page_labels_an_uploaded_clip(live_server: str, tmp_path: Path) -> None:
    with chromium() as driver:
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

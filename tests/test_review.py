"""The review page's API and page (``audioclf review IDX --labels labels.csv``): a real index of generated
recordings (built-in encoder), answered over HTTP with FastAPI's TestClient and checked in ``labels.csv``; two
reviewers at once from two threads; bad answers; the spectrogram; and the review tab in headless Chromium,
driven from the keyboard."""

from __future__ import annotations

import csv
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from browser import chromium, needs_chromium, serving
from conftest import tone, write_audio

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from audioclf.corpus.index import Index
from audioclf.corpus.plan import IndexOptions, build, source_items
from audioclf.encoders.spec import parse_spec
from audioclf.io.audio import WindowOptions
from audioclf.serve.app import create_app
from audioclf.serve.options import ServeOptions

RATE = 16_000
FREQS = ((220, 330, 440, 550), (1500, 2500, 3500, 4500), (700, 900, 1100, 1300), (300, 3000, 600, 6000))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(index folder, its cache): eight 4 s recordings of tones and noise in 1 s windows (32 windows)."""
    root = tmp_path_factory.mktemp("review")
    audio, cache = root / "audio", root / "cache"
    audio.mkdir()
    for n, freqs in enumerate(FREQS):
        write_audio(audio / f"t{n}.wav", np.concatenate([tone(f, 1.0, noise=0.05, seed=n) for f in freqs]), RATE)
        noise = np.random.default_rng(n).standard_normal(4 * RATE).astype(np.float32) * (0.1 + 0.1 * n)
        write_audio(audio / f"n{n}.wav", noise, RATE)
    options = IndexOptions(
        encoder=parse_spec("builtin"), windows=WindowOptions(1.0, 1.0), cache_dir=cache, progress=False
    )
    summary = build(source_items([str(audio)]), root / "corpus.idx", options)
    assert summary.n_windows == 32 and not summary.failures
    return root / "corpus.idx", cache


def review_app(corpus: tuple[Path, Path], labels: Path, **options: object):  # type: ignore[no-untyped-def]
    folder, cache = corpus
    served = ServeOptions(cache_dir=cache, **options)  # type: ignore[arg-type]
    return create_app(None, served, Index.open(folder, cache_dir=cache), labels_path=labels, annotator="lead")


@pytest.fixture()
def client(corpus: tuple[Path, Path], tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(review_app(corpus, tmp_path / "labels.csv")) as c:
        yield c


def manifest(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_answers_are_in_labels_csv_when_acknowledged(client: TestClient, tmp_path: Path) -> None:
    got = client.get("/v1/review/queue", params={"n": 4, "annotator": "ana", "strategy": "margin"})
    assert got.status_code == 200, got.text
    queue = got.json()  # margin needs two labels: diverse, and the note says why
    assert queue["labels"] == [] and queue["counts"] == {} and queue["strategy"] == "diverse" and queue["note"]
    items = queue["items"]
    assert len(items) == 4 and len({i["id"] for i in items}) == 4
    assert all(i["audio"] == f"/v1/search/audio/{i['id']}" for i in items)
    first, second, third = items[:3]
    answered = client.post(
        "/v1/review/answer", json={"id": first["id"], "kind": "label", "label": "hum", "annotator": "ana"}
    )
    assert answered.status_code == 200, answered.text
    assert answered.json()["counts"] == {"hum": 1} and answered.json()["labels"] == ["hum"]
    rows = manifest(tmp_path / "labels.csv")
    assert [(r["label"], float(r["end"]) - float(r["start"])) for r in rows] == [("hum", 1.0)]
    assert rows[0]["path"] == first["source"]
    client.post("/v1/review/answer", json={"id": second["id"], "kind": "none", "annotator": "ana"})
    client.post("/v1/review/answer", json={"id": third["id"], "kind": "label", "label": "hiss", "annotator": "ana"})
    assert {r["label"] for r in manifest(tmp_path / "labels.csv")} == {"hum", "hiss"}
    undone = client.post("/v1/review/undo", json={"annotator": "ana"})
    assert undone.status_code == 200 and undone.json()["undone"]["id"] == third["id"]
    assert undone.json()["counts"] == {"hum": 1, "none": 1}
    assert [r["label"] for r in manifest(tmp_path / "labels.csv")] == ["hum"]
    again = client.get("/v1/review/queue", params={"n": 10, "annotator": "ana", "strategy": "margin"}).json()
    ids = [i["id"] for i in again["items"]]
    assert first["id"] not in ids and second["id"] not in ids  # answered: never suggested again
    assert again["strategy"] == "margin" and all(i["guess"] in ("hum", "none") for i in again["items"])
    png = client.get(f"/v1/review/spectrogram/{first['id']}")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG") and 100 < len(png.content) < 2_000_000


def test_two_reviewers_at_once_lose_nothing_and_never_share_a_window(client: TestClient, tmp_path: Path) -> None:
    given: dict[str, list[int]] = {"ana": [], "ben": []}
    errors: list[str] = []
    start = threading.Barrier(2)

    def reviewer(name: str, label: str) -> None:
        start.wait()
        for _ in range(3):
            got = client.get("/v1/review/queue", params={"n": 3, "annotator": name})
            if got.status_code != 200:
                errors.append(got.text)
                return
            for item in got.json()["items"][:2]:  # the third stays leased, unanswered
                given[name].append(item["id"])
                body = {"id": item["id"], "kind": "label", "label": label, "annotator": name}
                answered = client.post("/v1/review/answer", json=body)
                if answered.status_code != 200:
                    errors.append(answered.text)

    threads = [threading.Thread(target=reviewer, args=a) for a in (("ana", "low"), ("ben", "high"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(given["ana"]) == len(given["ben"]) == 6
    assert not set(given["ana"]) & set(given["ben"])  # never handed the same window
    rows = manifest(tmp_path / "labels.csv")
    assert sorted(r["label"] for r in rows) == ["high"] * 6 + ["low"] * 6  # neither's labels lost


@pytest.mark.parametrize(
    ("method", "route", "body", "status", "message"),
    [
        ("post", "/v1/review/answer", {"id": 0, "kind": "maybe", "annotator": "a"}, 400, "kind='maybe': use one of"),
        ("post", "/v1/review/answer", {"id": 0, "kind": "undo"}, 400, "kind='undo'"),
        ("post", "/v1/review/answer", {"id": 0, "kind": "label"}, 400, "give the label too"),
        ("post", "/v1/review/answer", {"id": 0, "kind": "label", "label": "none"}, 400, "send kind none"),
        ("post", "/v1/review/answer", {"id": 0, "kind": "skip", "colour": 1}, 400, "unknown field(s) ['colour']"),
        ("post", "/v1/review/answer", {"id": "x", "kind": "skip"}, 400, "id='x'"),
        ("post", "/v1/review/answer", {"id": 0, "kind": "skip", "origin": "dream"}, 400, "origin='dream'"),
        ("post", "/v1/review/answer", {"id": 999_999, "kind": "none"}, 404, "window 999999: not in this index"),
        ("post", "/v1/review/undo", {"who": "a"}, 400, '{"annotator": "NAME"}'),
        ("get", "/v1/review/spectrogram/999999", None, 404, "window 999999: not in this index"),
        ("get", "/v1/review/spectrogram/..%2Fetc", None, 404, "etc"),
        ("get", "/v1/review/queue?n=0", None, 400, "n=0: ask for 1 to 50"),
        ("get", "/v1/review/queue?strategy=best", None, 400, "strategy 'best'"),
    ],
)
def test_bad_requests_are_one_line_errors(
    client: TestClient, method: str, route: str, body: object, status: int, message: str
) -> None:
    got = client.post(route, json=body) if method == "post" else client.get(route)
    assert got.status_code == status, got.text
    error = got.json()["error"]
    assert message in error and "\n" not in error


def test_the_review_routes_take_the_token_and_need_a_labels_file(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    with TestClient(review_app(corpus, tmp_path / "labels.csv", token="s3cret")) as c:
        assert c.get("/v1/review/queue").status_code == 401
        assert c.post("/v1/review/answer", json={"id": 0, "kind": "skip"}).status_code == 401
        ok = c.get("/v1/review/queue", params={"n": 1}, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json()["annotator"] == "lead"
    folder, cache = corpus
    with TestClient(create_app(None, ServeOptions(cache_dir=cache), Index.open(folder, cache_dir=cache))) as c:
        got = c.get("/v1/review/queue")
        assert got.status_code == 404 and "no labels file" in got.json()["error"]


def test_review_refuses_labels_of_another_index_in_one_line(
    corpus: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from audioclf.annotation.labels import Labels
    from audioclf.cli.main import main

    Labels(tmp_path / "labels.csv", "an-index-that-is-not-this-one").close()
    folder, cache = corpus
    code = main(
        ["review", str(folder), "--labels", str(tmp_path / "labels.csv"), "--port", "0", "--cache-dir", str(cache)]
    )
    err = capsys.readouterr().err.strip()
    assert code != 0 and "labels are of another index" in err and len(err.splitlines()) == 1, err


@needs_chromium
def test_the_review_tab_labels_from_the_keyboard_and_undo_survives_a_reload(
    corpus: tuple[Path, Path], tmp_path: Path
) -> None:
    pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    labels = tmp_path / "labels.csv"
    with serving(review_app(corpus, labels)) as url, chromium() as driver:
        wait = WebDriverWait(driver, 30)
        driver.get(url + "/")
        wait.until(ec.element_to_be_clickable((By.ID, "tab-review"))).click()
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#review-item h3")))
        assert "no labels yet" in driver.find_element(By.ID, "review-keys").text
        driver.find_element(By.ID, "review-new-label").send_keys("alpha", Keys.ENTER)
        wait.until(ec.text_to_be_present_in_element((By.ID, "review-keys"), "1alpha"))
        body = driver.find_element(By.TAG_NAME, "body")
        shown = []
        for n in range(1, 4):
            shown.append(driver.find_element(By.ID, "review-item").get_attribute("data-id"))
            body.send_keys("1")
            wait.until(ec.text_to_be_present_in_element((By.ID, "review-progress"), f"alpha {n} —"))
        assert len(set(shown)) == 3
        body.send_keys("u")
        wait.until(ec.text_to_be_present_in_element((By.ID, "review-progress"), "alpha 2 —"))
        assert driver.find_element(By.ID, "review-item").get_attribute("data-id") == shown[2]  # back on screen
        picture = driver.find_element(By.CSS_SELECTOR, "#review-item img")
        wait.until(lambda _: (picture.get_attribute("src") or "").startswith("blob:"))
        driver.refresh()
        wait.until(ec.element_to_be_clickable((By.ID, "tab-review"))).click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "review-progress"), "alpha 2 —"))
        assert driver.find_element(By.ID, "review-keys").text.startswith("1alpha")
    rows = manifest(labels)
    assert len(rows) == 2 and {r["label"] for r in rows} == {"alpha"}

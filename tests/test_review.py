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

from audioclf.annotation.labels import Kind, Labels, Mode, Origin
from audioclf.annotation.suggest import Strategy, StrategyKind, suggest
from audioclf.api import Model
from audioclf.corpus.card import CorpusError
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
        # a search by clip on the main tab, then "label more like this" on its best hit: a search queue
        driver.find_element(By.ID, "tab-main").click()
        driver.find_element(By.ID, "search-file").send_keys(str(corpus[0].parent / "audio" / "t1.wav"))
        more = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "#hits li button")))
        assert more.text == "label more like this"
        more.click()
        wait.until(lambda d: d.find_element(By.ID, "review-strategy").get_attribute("value") == "search")
        wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "#review-item .guess"), "similarity"))
        driver.find_element(By.TAG_NAME, "body").send_keys("1")  # the page was reloaded: a new body
        wait.until(ec.text_to_be_present_in_element((By.ID, "review-progress"), "alpha 3 —"))
    log = Labels(labels, Index.open(corpus[0], cache_dir=corpus[1]).card.id)
    assert [a.origin for a in log.answers()] == [Origin.SUGGESTION] * 2 + [Origin.SEARCH]
    assert len(manifest(labels)) == 3


@pytest.fixture(scope="module")
def tones_model(corpus: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Model:
    """A probe trained (built-in encoder, the index's cache) on the corpus's recordings: tone or noise."""
    import audioclf

    folder, cache = corpus
    root = tmp_path_factory.mktemp("tones-model")
    rows = [{"path": str(p), "label": p.stem[0], "group": p.stem} for p in sorted((folder.parent / "audio").iterdir())]
    with (root / "train.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label", "group"])
        writer.writeheader()
        writer.writerows(rows)
    return audioclf.train(root / "train.csv", root / "model", encoder="builtin", cache_dir=cache, folds=2)


def test_a_trained_probe_scores_the_index_windows_as_it_predicts_them(
    corpus: tuple[Path, Path], tones_model: Model
) -> None:
    from dataclasses import replace

    from audioclf.annotation.scorers import TrainedScorer
    from audioclf.io.manifest import Item
    from audioclf.labelling.apply import apply_model

    folder, cache = corpus
    index = Index.open(folder, cache_dir=cache)
    scorer = TrainedScorer(tones_model.trained, index)
    ids, _, _, _ = index.exact_arrays()
    got = scorer.probabilities(np.arange(len(ids)))
    rows = index.store.rows([int(i) for i in ids])
    sources = sorted({r.source for r in rows.values()})
    items = [Item(s, None, None, s, s) for s in sources]
    preds, _ = apply_model(tones_model.trained, items, cache, windows=index.card.windows, progress=False)
    logits = preds.window_logits - preds.window_logits.max(axis=1, keepdims=True)
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    where = {
        (sources[r], round(float(s), 3)): k
        for k, (r, s) in enumerate(zip(preds.window_recording, preds.window_starts_s, strict=True))
    }
    order = [where[(rows[int(i)].source, round(rows[int(i)].start_s, 3))] for i in ids]
    assert got.classes == preds.labels == ["n", "t"]
    np.testing.assert_allclose(got.values, expected[order], atol=2e-4)
    tone = np.array([Path(rows[int(i)].source).stem[0] == "t" for i in ids])
    assert got.values[tone, 1].mean() > got.values[~tone, 1].mean() + 0.05  # it ranks tones above noise
    index.card = replace(index.card, encoder_identity="builtin:another")
    with pytest.raises(CorpusError, match=r"trained on encoder builtin.*build an index with the model's encoder"):
        TrainedScorer(tones_model.trained, index)
    index.card = replace(index.card, encoder_identity=tones_model.trained.encoder_identity, layer=3, n_layers=4)
    with pytest.raises(CorpusError, match="reads layer last of 1, the index holds layer 3 of 4"):
        TrainedScorer(tones_model.trained, index)
    index.close()


def test_queues_from_the_trained_model_and_from_a_search(
    corpus: tuple[Path, Path], tones_model: Model, tmp_path: Path
) -> None:
    folder, cache = corpus
    labels = tmp_path / "labels.csv"
    app = create_app(
        tones_model.trained, ServeOptions(cache_dir=cache), Index.open(folder, cache_dir=cache), labels_path=labels
    )
    with TestClient(app) as client:
        queue = client.get("/v1/review/queue", params={"n": 6, "from": "model"}).json()
        assert queue["from"] == "model" and queue["strategy"] == "margin" and queue["has_model"]
        assert queue["scored_by"] == "the model model" and len(queue["items"]) == 6
        assert {i["origin"] for i in queue["items"]} == {"model"} and {i["guess"] for i in queue["items"]} <= {"n", "t"}
        first = queue["items"][0]
        answer = {"id": first["id"], "kind": "label", "label": "t", "origin": first["origin"]}
        assert client.post("/v1/review/answer", json=answer).status_code == 200
        like = client.get("/v1/review/queue", params={"n": 5, "from": "search", "like": first["id"]}).json()
        found = [i["id"] for i in like["items"]]
        assert like["from"] == "search" and like["strategy"] is None and len(found) == 5
        assert first["id"] not in found and {i["origin"] for i in like["items"]} == {"search"}
        scores = [i["score"] for i in like["items"]]
        assert scores[0] == max(scores)  # the best hit first (then one per recording before the rest)
        bad = client.get("/v1/review/queue", params={"from": "search"})
        assert bad.status_code == 400 and "words or the ids of windows" in bad.json()["error"]
        bad = client.get("/v1/review/queue", params={"from": "model", "text": "x"})
        assert bad.status_code == 400 and "go with a search queue" in bad.json()["error"]
    log = Labels(labels, Index.open(folder, cache_dir=cache).card.id)
    assert [(a.origin, a.label) for a in log.answers()] == [(Origin.MODEL, "t")]
    with TestClient(review_app(corpus, tmp_path / "other.csv")) as client:
        got = client.get("/v1/review/queue", params={"from": "model"})
        assert got.status_code == 400 and "no trained model" in got.json()["error"]
        assert client.get("/v1/review/queue").json()["has_model"] is False


def test_a_multi_label_file_keeps_every_label_of_a_window(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    folder, cache = corpus
    index = Index.open(folder, cache_dir=cache)
    labels = Labels(tmp_path / "labels.csv", index.card.id, Mode.MULTI)
    rows = index.store.rows(list(range(1, 9)))
    labels.add(rows[1], Kind.LABEL, "tone")
    early = suggest(index, labels, 2, Strategy.parse("margin"))
    assert early.note is not None and "a label on some answered windows and not on others" in early.note
    for w, said in ((1, "tone"), (1, "low"), (2, "tone"), (3, "noise"), (4, "noise"), (4, "loud"), (5, "tone")):
        labels.add(rows[w], Kind.LABEL, said)
    labels.add(rows[5], Kind.NOT, "tone")  # taken away again
    labels.add(rows[6], Kind.NONE)
    got = {r["path"].split("/")[-1] + r["start"]: r["label"] for r in manifest(tmp_path / "labels.csv")}
    assert sorted(got.values()) == ["loud;noise", "low;tone", "noise", "tone"]
    assert labels.counts() == {"tone": 2, "noise": 2, "low": 1, "loud": 1, "none": 1}
    suggested = suggest(index, labels, 4, Strategy.parse("margin"))
    assert suggested.strategy is not None and suggested.strategy.kind is StrategyKind.MARGIN
    assert all(s.guess for s in suggested.suggestions) and not {s.window_id for s in suggested.suggestions} & set(rows)
    labels.close()
    with pytest.raises(CorpusError, match="multi-label, not single"):
        Labels(tmp_path / "labels.csv", index.card.id, Mode.SINGLE)
    assert Labels(tmp_path / "labels.csv", index.card.id).mode is Mode.MULTI  # kept without asking
    index.close()


def test_a_window_whose_recording_vanished_is_one_line_and_the_queue_goes_on(tmp_path: Path) -> None:
    audio, cache = tmp_path / "audio", tmp_path / "cache"
    audio.mkdir()
    for n in range(2):
        write_audio(audio / f"t{n}.wav", tone(300 + 500 * n, 2.0, noise=0.05, seed=n), RATE)
    options = IndexOptions(
        encoder=parse_spec("builtin"), windows=WindowOptions(1.0, 1.0), cache_dir=cache, progress=False
    )
    build(source_items([str(audio)]), tmp_path / "idx", options)
    (audio / "t0.wav").unlink()
    with TestClient(review_app((tmp_path / "idx", cache), tmp_path / "labels.csv")) as client:
        items = client.get("/v1/review/queue", params={"n": 4}).json()["items"]
        gone = next(i for i in items if i["source"].endswith("t0.wav"))
        for url in (gone["audio"], gone["spectrogram"]):
            got = client.get(url)
            assert got.status_code == 404 and got.json()["error"].endswith("is no longer where it was indexed")
        answer = {"id": gone["id"], "kind": "skip"}
        assert client.post("/v1/review/answer", json=answer).status_code == 200  # the reviewer skips it

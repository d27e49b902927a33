"""`audioclf serve --index`: a real index built from generated recordings with the built-in encoder, searched
through FastAPI's TestClient (by an uploaded clip, a time range of it, per recording; bad requests; each hit's
audio; the token; a server with no model) and through the page in headless Chromium against a real uvicorn
server."""

from __future__ import annotations

import io
import shutil
import threading
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from browser import chromium, needs_chromium, serving
from conftest import tone, write_audio

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from audioclf.cli.main import main
from audioclf.corpus.index import Index
from audioclf.corpus.plan import IndexOptions, build, source_items
from audioclf.encoders.spec import parse_spec
from audioclf.io.audio import WindowOptions
from audioclf.model.folder import load_model
from audioclf.serve.app import create_app
from audioclf.serve.batcher import QueueFull
from audioclf.serve.corpus_index import Lane
from audioclf.serve.options import ServeOptions

RATE = 16_000


def recording(freqs: tuple[float, ...], seed: int) -> np.ndarray:
    """One second of each tone, with a little noise."""
    return np.concatenate([tone(f, 1.0, noise=0.05, seed=seed + n) for n, f in enumerate(freqs)])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(index folder, its cache, the folder of its recordings): four 3 s recordings in 1 s windows, ``r2.wav``
    a copy of ``r1.wav``."""
    root = tmp_path_factory.mktemp("corpus")
    audio, cache = root / "audio", root / "cache"
    audio.mkdir()
    write_audio(audio / "r0.wav", recording((220, 330, 440), 0), RATE)
    write_audio(audio / "r1.wav", recording((1500, 2500, 3500), 10), RATE)
    shutil.copy(audio / "r1.wav", audio / "r2.wav")
    noise = np.random.default_rng(7).standard_normal(3 * RATE).astype(np.float32) * 0.3
    write_audio(audio / "r3.wav", noise, RATE)
    options = IndexOptions(
        encoder=parse_spec("builtin"), windows=WindowOptions(1.0, 1.0), cache_dir=cache, progress=False
    )
    summary = build(source_items([str(audio)]), root / "corpus.idx", options)
    assert summary.n_windows == 12 and not summary.failures
    return root / "corpus.idx", cache, audio


def index_client(corpus: tuple[Path, Path, Path], model: Path | None = None, **options: object) -> TestClient:
    folder, cache, _ = corpus
    served = ServeOptions(cache_dir=cache, **options)  # type: ignore[arg-type]
    trained = None if model is None else load_model(model)
    return TestClient(create_app(trained, served, Index.open(folder, cache_dir=cache)))


@pytest.fixture()
def client(corpus: tuple[Path, Path, Path]) -> Iterator[TestClient]:
    with index_client(corpus) as c:
        yield c


def clip_form(clip: Path, /, **fields: object) -> dict[str, object]:
    """``client.post`` arguments: ``clip`` as the form's file and ``fields`` beside it."""
    data = {k: str(v) for k, v in fields.items()}
    return {"files": {"file": (clip.name, clip.read_bytes(), "audio/wav")}, "data": data}


def names(hits: list[dict[str, object]]) -> list[str]:
    return [Path(str(h["source"])).name for h in hits]


def test_an_uploaded_clip_finds_itself_and_its_copy_first(client: TestClient, corpus: tuple[Path, Path, Path]) -> None:
    got = client.post("/v1/search", **clip_form(corpus[2] / "r1.wav", top_k=4))  # type: ignore[arg-type]
    assert got.status_code == 200, got.text
    hits = got.json()["hits"]
    assert len(hits) == 4 and names(hits)[:2] in (["r1.wav", "r1.wav"], ["r1.wav", "r2.wav"], ["r2.wav", "r1.wav"])
    assert set(names(hits)) <= {"r1.wav", "r2.wav"}  # their six windows beat every other recording's
    assert all(h["audio"] == f"/v1/search/audio/{h['id']}" for h in hits)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    per = client.post("/v1/search", **clip_form(corpus[2] / "r1.wav", top_k=3, per_recording="true"))  # type: ignore[arg-type]
    assert per.status_code == 200, per.text
    found = names(per.json()["hits"])
    assert len(found) == 3 and len(set(found)) == 3 and set(found[:2]) == {"r1.wav", "r2.wav"}


def test_a_time_range_of_the_clip_is_the_query(client: TestClient, corpus: tuple[Path, Path, Path]) -> None:
    got = client.post("/v1/search", **clip_form(corpus[2] / "r0.wav", start=1, end=2, top_k=1))  # type: ignore[arg-type]
    assert got.status_code == 200, got.text
    (hit,) = got.json()["hits"]
    assert names([hit]) == ["r0.wav"] and (hit["start_s"], hit["end_s"]) == (1.0, 2.0) and hit["score"] > 0.999
    assert hit["audio_from_s"] == 0.0  # the audio starts a second before the hit


@pytest.mark.parametrize(
    ("request_", "status", "message"),
    [
        ({"files": {"file": ("notes.wav", b"not audio at all" * 50)}}, 415, "notes.wav: cannot decode"),
        ({"files": {"file": ("empty.wav", b"")}}, 400, "the file is empty"),
        ({"files": {"clip": ("a.wav", b"x")}}, 400, "multipart form field 'file'"),
        ({"json": {"text": "a train arriving"}}, 409, "corpus.idx: has no transcripts"),
        ({"json": {"text": "   "}}, 400, "text: give the words"),
        ({"json": {"text": "x", "top_k": 0}}, 400, "top_k=0: ask for 1 to 1000"),
        ({"json": {"text": "x", "top_k": 5000}}, 400, "top_k=5000"),
        ({"json": {"text": "x", "top_k": True}}, 400, "top_k=True"),
        ({"json": {"text": "x", "colour": "red"}}, 400, "unknown field(s) ['colour']"),
        ({"content": b"{not json"}, 400, 'send JSON {"text": "words"}'),
    ],
)
def test_bad_searches_are_one_line_errors(client: TestClient, request_: dict, status: int, message: str) -> None:
    got = client.post("/v1/search", **request_)
    error = got.json()["error"]
    assert got.status_code == status and message in error and "\n" not in error, got.text
    assert "/tmp" not in error and "audioclf-upload" not in error  # never the server's own paths


def test_bad_form_fields(client: TestClient, corpus: tuple[Path, Path, Path]) -> None:
    clip = corpus[2] / "r0.wav"
    for fields, message in [
        ({"top_k": "many"}, "top_k='many'"),
        ({"start": "2", "end": "1"}, "end after start"),
        ({"per_recording": "maybe"}, "use true or false"),
        ({"path": "/etc/passwd"}, "unknown form field(s) ['path']"),
    ]:
        got = client.post("/v1/search", **clip_form(clip, **fields))  # type: ignore[arg-type]
        assert got.status_code == 400 and message in got.json()["error"], got.text


def test_a_hits_audio_is_its_window_with_context(client: TestClient, corpus: tuple[Path, Path, Path]) -> None:
    hits = client.post("/v1/search", **clip_form(corpus[2] / "r3.wav", top_k=12)).json()["hits"]  # type: ignore[arg-type]
    middle = next(h for h in hits if h["start_s"] == 1.0)
    got = client.get(middle["audio"])
    assert got.status_code == 200 and got.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(got.content)) as wav:
        assert wav.getframerate() == RATE and wav.getnchannels() == 1
        assert abs(wav.getnframes() / RATE - 3.0) < 0.01  # 0–3 s: the window 1–2 s and a second either side
    last = next(h for h in hits if h["start_s"] == 2.0)
    with wave.open(io.BytesIO(client.get(last["audio"]).content)) as wav:
        assert abs(wav.getnframes() / RATE - 2.0) < 0.01  # 1–3 s: the recording ends there
    for bad in ("999999", "0", "-1", "abc", "1.5", "%2e%2e%2fetc%2fpasswd", "..%2F..%2Fetc%2Fpasswd"):
        missing = client.get(f"/v1/search/audio/{bad}")
        assert missing.status_code == 404 and "\n" not in missing.json()["error"], (bad, missing.text)


def test_the_token_guards_search_and_audio(corpus: tuple[Path, Path, Path]) -> None:
    clip = corpus[2] / "r0.wav"
    with index_client(corpus, token="s3cret") as guarded:
        assert guarded.get("/healthz").status_code == 200 and guarded.get("/").status_code == 200
        assert guarded.post("/v1/search", **clip_form(clip)).status_code == 401  # type: ignore[arg-type]
        assert guarded.get("/v1/index").status_code == 401
        assert guarded.get("/v1/search/audio/1").status_code == 401
        auth = {"Authorization": "Bearer s3cret"}
        ok = guarded.post("/v1/search", headers=auth, **clip_form(clip))  # type: ignore[arg-type]
        assert ok.status_code == 200, ok.text
        assert guarded.get(ok.json()["hits"][0]["audio"], headers=auth).status_code == 200


def test_without_a_model_the_model_routes_say_so(client: TestClient) -> None:
    for got in (client.get("/v1/model"), client.post("/v1/predict", json={"url": "https://example.com/a.wav"})):
        assert got.status_code == 404 and got.json()["error"].startswith("no model loaded; start serve with a model")
    info = client.get("/v1/index").json()
    assert info == {
        "name": "corpus.idx",
        "encoder": "builtin",
        "recordings": 4,
        "windows": 12,
        "window_s": 1.0,
        "hop_s": 1.0,
        "transcripts": False,
    }
    assert "/v1/search" in client.get("/openapi.json").json()["paths"]


def test_a_model_and_an_index_together(corpus: tuple[Path, Path, Path], tone_model: tuple[Path, Path]) -> None:
    clip = corpus[2] / "r0.wav"
    with index_client(corpus, model=tone_model[0]) as both:
        assert both.get("/v1/model").json()["labels"] == ["high", "low", "mid"]
        labelled = both.post("/v1/predict", files=[("files", (clip.name, clip.read_bytes()))])
        assert labelled.status_code == 200 and labelled.json()["predictions"][0]["label"], labelled.text
        assert both.post("/v1/search", **clip_form(clip)).status_code == 200  # type: ignore[arg-type]


def test_a_slow_search_is_504_and_a_full_lane_503(
    corpus: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from audioclf.serve.corpus_index import CorpusIndex

    release = threading.Event()
    monkeypatch.setattr(CorpusIndex, "search_clip", lambda *args: release.wait(10) and [])
    with index_client(corpus, timeout_s=0.3) as slow:
        got = slow.post("/v1/search", **clip_form(corpus[2] / "r0.wav"))  # type: ignore[arg-type]
        release.set()
    assert got.status_code == 504 and "no answer within 0.3 s" in got.json()["error"]
    lane = Lane("search", 1, 1, lambda: None)
    gate = threading.Event()
    running, waiting = lane.submit(gate.wait, 10), lane.submit(gate.wait, 10)
    with pytest.raises(QueueFull, match="too many search requests"):
        lane.submit(gate.wait, 10)
    gate.set()
    assert running.result(5) and waiting.result(5)
    lane.submit(gate.wait, 10).result(5)  # a slot is free again
    lane.close()


def test_the_command_line_needs_a_model_or_an_index(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: serve what?") and "--model" in err and "--index" in err and "\n" not in err
    assert main(["serve", "--index", str(tmp_path / "nowhere.idx"), "--cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "nowhere.idx: no index here" in err and "\n" not in err
    broken = tmp_path / "broken.idx"
    broken.mkdir()
    (broken / "index.json").write_text("{not json")
    assert main(["serve", "--index", str(broken), "--cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a readable index card" in err and "\n" not in err


@pytest.fixture()
def live_index_server(corpus: tuple[Path, Path, Path]) -> Iterator[str]:
    folder, cache, _ = corpus
    with serving(create_app(None, ServeOptions(cache_dir=cache), Index.open(folder, cache_dir=cache))) as url:
        yield url


@needs_chromium
def test_the_page_searches_by_a_clip_and_plays_the_hits(
    live_index_server: str, corpus: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    with chromium("--autoplay-policy=no-user-gesture-required", size="1000,1400") as driver:
        driver.get(live_index_server + "/")
        wait = WebDriverWait(driver, 20)
        wait.until(expected_conditions.visibility_of_element_located((By.ID, "search-section")))
        wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "index-info"), "12 windows"))
        assert not any(p.is_displayed() for p in driver.find_elements(By.CSS_SELECTOR, ".predict-part"))
        assert not driver.find_element(By.ID, "search-text").is_enabled()  # no transcripts: words are off
        query = write_audio(tmp_path / "query.wav", recording((220, 330, 440), 0)[RATE : 2 * RATE], RATE)
        driver.find_element(By.ID, "search-file").send_keys(str(query))
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#hits .hit")) == 10)
        first = driver.find_elements(By.CSS_SELECTOR, "#hits .hit")[0]
        assert first.find_element(By.TAG_NAME, "h3").text == "r0.wav", first.text
        assert "1.00 s–2.00 s" in first.find_element(By.CSS_SELECTOR, ".meta").text
        player = first.find_element(By.TAG_NAME, "audio")
        wait.until(lambda d: d.execute_script("return arguments[0].readyState >= 1", player))
        state = driver.execute_script("const a = arguments[0]; return [a.src, a.duration, a.currentTime];", player)
        assert state[0].startswith("blob:") and abs(state[1] - 3.0) < 0.05, state
        assert abs(state[2] - 1.0) < 0.05, state  # the player starts at the hit, a second into its audio
        assert "10 hits for query.wav" in driver.find_element(By.ID, "search-status").text
        assert driver.save_screenshot(str(tmp_path / "search.png"))

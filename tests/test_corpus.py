"""The corpus index through the path users take: real SQLite store, real usearch graph, real encoders (built-in and
tiny wav2vec2), real audio files written by PyAV, and the CLI."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_args, tone, write_audio

from audioclf.cli.main import main
from audioclf.corpus import ann as ann_module
from audioclf.corpus.card import CorpusError
from audioclf.corpus.index import Example, Index, Query
from audioclf.corpus.plan import IndexOptions, build, source_items
from audioclf.corpus.search import SearchOptions
from audioclf.corpus.similarity import Similarity
from audioclf.encoders.spec import parse_spec
from audioclf.io.audio import WindowOptions
from audioclf.io.download import FetchOptions
from audioclf.io.manifest import load_manifest

BUILTIN = parse_spec("builtin")
WINDOWS = WindowOptions(1.0, 0.5)
FREQS = (220.0, 330.0, 495.0, 740.0, 1110.0, 1660.0)


def corpus(folder: Path, n_per_freq: int = 3, seconds: float = 2.0) -> list[Path]:
    """Recordings of six tones, a few takes each (different noise), named by their tone."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for f in FREQS:
        for k in range(n_per_freq):
            wave = tone(f * (1 + 0.004 * k), seconds, noise=0.05, seed=int(f) + k)
            files.append(write_audio(folder / f"tone{int(f)}_{k}.wav", wave, 16_000))
    return files


def options(cache: Path, **kw: object) -> IndexOptions:
    base: dict[str, object] = {"encoder": BUILTIN, "windows": WINDOWS, "cache_dir": cache, "progress": False}
    return IndexOptions(**(base | kw))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path], Path]:
    root = tmp_path_factory.mktemp("corpus")
    files = corpus(root / "audio")
    summary = build(source_items([str(root / "audio")]), root / "idx", options(root / "cache"))
    assert summary.n_new == len(files) and not summary.failures
    return root / "idx", files, root / "cache"


def freq_of(source: str) -> str:
    return Path(source).stem.split("_")[0]


def test_search_by_example_finds_the_same_sound_in_other_recordings(built: tuple[Path, list[Path], Path]) -> None:
    folder, files, cache = built
    index = Index.open(folder, cache_dir=cache)
    query = files[4]  # a take of the second tone
    hits = index.search(Query.by_example(query), SearchOptions(top_k=2, per_recording=True, exclude_source=True))
    assert len(hits) == 2 and {freq_of(h.source) for h in hits} == {freq_of(str(query))}
    assert all(h.source != str(query) for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # without per-recording, every window of the query's own recording may come first
    hits = index.search(Query.by_example(query), SearchOptions(top_k=3))
    assert hits[0].source == str(query)
    window = index.search(Query.by_example(query, 0.0, 1.0), SearchOptions(top_k=1))[0]  # exactly one window
    assert (window.source, window.start_s, window.score) == (str(query), 0.0, pytest.approx(1.0, abs=1e-4))


def test_per_recording_gives_one_window_per_recording(built: tuple[Path, list[Path], Path]) -> None:
    folder, files, cache = built
    index = Index.open(folder, cache_dir=cache)
    hits = index.search(Query.by_example(files[0]), SearchOptions(top_k=len(files), per_recording=True))
    assert len(hits) == len(files) and len({h.source for h in hits}) == len(files)
    windows = index.search(Query.by_example(files[0]), SearchOptions(top_k=len(files)))
    assert len({h.source for h in windows}) < len(files)  # several windows of the nearest recordings


def test_search_by_time_range_finds_what_is_in_that_range(tmp_path: Path) -> None:
    audio = tmp_path / "audio"
    files = corpus(audio, n_per_freq=2)
    # one recording: 2 s of the lowest tone, then 2 s of the highest
    both = np.concatenate([tone(FREQS[0], 2.0, noise=0.05, seed=1), tone(FREQS[-1], 2.0, noise=0.05, seed=2)])
    mixed = write_audio(tmp_path / "mixed.wav", both, 16_000)
    build(source_items([str(audio)]), tmp_path / "idx", options(tmp_path / "cache"))
    index = Index.open(tmp_path / "idx", cache_dir=tmp_path / "cache")
    top = SearchOptions(top_k=2, per_recording=True)
    early = index.search(Query.by_example(mixed, 0.0, 2.0), top)
    late = index.search(Query.by_example(mixed, 2.0, 4.0), top)
    assert {freq_of(h.source) for h in early} == {freq_of(str(files[0]))}
    assert {freq_of(h.source) for h in late} == {freq_of(str(files[-1]))}


def test_negative_examples_push_their_sound_down(built: tuple[Path, list[Path], Path]) -> None:
    folder, files, cache = built
    index = Index.open(folder, cache_dir=cache)
    both = SearchOptions(top_k=len(files), per_recording=True)
    plain = index.search(Query(examples=(Example(str(files[0])),)), both)
    pushed = index.search(Query(examples=(Example(str(files[0])),), negatives=(Example(str(files[3])),)), both)
    rank = {h.source: n for n, h in enumerate(plain)}
    rank_pushed = {h.source: n for n, h in enumerate(pushed)}
    second = [str(f) for f in files if freq_of(str(f)) == freq_of(str(files[3]))]
    assert sum(rank_pushed[s] for s in second) > sum(rank[s] for s in second)


def test_a_second_build_embeds_nothing_and_new_sources_only_are_added(tmp_path: Path) -> None:
    files = corpus(tmp_path / "audio", n_per_freq=1)
    first = build(source_items([str(f) for f in files[:4]]), tmp_path / "idx", options(tmp_path / "cache"))
    assert (first.n_new, first.n_known) == (4, 0)
    again = build(source_items([str(f) for f in files]), tmp_path / "idx", options(tmp_path / "cache"))
    assert (again.n_new, again.n_known, again.n_cached) == (2, 4, 0)
    last = build(source_items([str(f) for f in files]), tmp_path / "idx", options(tmp_path / "cache"))
    assert (last.n_new, last.n_known, last.n_windows_added) == (0, 6, 0)
    assert last.n_recordings == 6 and last.n_windows == first.n_windows + again.n_windows_added


def test_failures_are_listed_and_kept_out(tmp_path: Path) -> None:
    files = corpus(tmp_path / "audio", n_per_freq=1)
    bad = tmp_path / "audio" / "broken.wav"
    bad.write_bytes(b"RIFF not really")
    summary = build(source_items([str(tmp_path / "audio")]), tmp_path / "idx", options(tmp_path / "cache"))
    assert summary.n_new == len(files) and [f.item.source for f in summary.failures] == [str(bad.resolve())]
    index = Index.open(tmp_path / "idx", cache_dir=tmp_path / "cache")
    assert [f.source for f in index.store.failures()] == [str(bad.resolve())]


def test_another_encoder_cannot_add_to_an_index(built: tuple[Path, list[Path], Path], tiny_wav2vec2: Path) -> None:
    folder, files, cache = built
    with pytest.raises(CorpusError, match="built with builtin"):
        build(source_items([str(files[0])]), folder, options(cache, encoder=parse_spec(f"hf:{tiny_wav2vec2}")))


def test_exact_and_ann_search_agree_on_a_small_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = corpus(tmp_path / "audio", n_per_freq=4)
    monkeypatch.setattr(ann_module, "ANN_FROM_WINDOWS", 10)
    opts = options(tmp_path / "cache", similarity=Similarity.STANDARDIZED)
    summary = build(source_items([str(tmp_path / "audio")]), tmp_path / "idx", opts)
    assert summary.ann and (tmp_path / "idx" / ann_module.ANN_NAME).is_file()
    with_ann = Index.open(tmp_path / "idx", cache_dir=tmp_path / "cache")
    opened = with_ann._ann()
    assert opened is not None and with_ann._ann()[0] is opened[0]  # type: ignore[index]  # opened once, reused
    (tmp_path / "idx" / ann_module.STATE_NAME).unlink()  # no ANN state: exact search
    exact = Index.open(tmp_path / "idx", cache_dir=tmp_path / "cache")
    assert exact._ann() is None
    for query in files[::5]:
        for per_recording in (False, True):
            top = SearchOptions(top_k=5, per_recording=per_recording)
            a = [(h.source, h.start_s) for h in with_ann.search(Query.by_example(query), top)]
            b = [(h.source, h.start_s) for h in exact.search(Query.by_example(query), top)]
            assert a == b


def test_an_ann_index_behind_the_store_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = corpus(tmp_path / "audio", n_per_freq=2)
    monkeypatch.setattr(ann_module, "ANN_FROM_WINDOWS", 10)
    build(source_items([str(f) for f in files[:6]]), tmp_path / "idx", options(tmp_path / "cache"))
    monkeypatch.setattr(ann_module, "ANN_FROM_WINDOWS", 10**9)  # the next build leaves the graph as it was
    build(source_items([str(f) for f in files]), tmp_path / "idx", options(tmp_path / "cache"))
    index = Index.open(tmp_path / "idx", cache_dir=tmp_path / "cache")
    assert index._ann() is None  # it covers fewer windows than the store holds: exact search answers
    hits = index.search(Query.by_example(files[-1]), SearchOptions(top_k=1))
    assert hits[0].source == str(files[-1])


KILL_SCRIPT = """
import os, signal, sys
from pathlib import Path
from audioclf.corpus import build as build_module
from audioclf.corpus.plan import IndexOptions, make_plan, source_items
from audioclf.corpus.build import build_index
from audioclf.encoders.spec import parse_spec
from audioclf.io.audio import WindowOptions
from audioclf.io.download import FetchOptions
from audioclf.io.manifest import load_manifest

build_module.BATCH_RECORDINGS = 4
calls = [0]
def stop():
    calls[0] += 1
    if calls[0] == int(sys.argv[3]):
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9, between two encoder calls of a batch
    return False
options = IndexOptions(encoder=parse_spec("builtin"), windows=WindowOptions(1.0, 0.5), cache_dir=Path(sys.argv[2]),
                       progress=False)
build_index(source_items([sys.argv[1]]), Path(sys.argv[4]), make_plan(options, stop=stop))
"""


def test_a_killed_build_keeps_what_it_committed_and_resumes(tmp_path: Path) -> None:
    files = corpus(tmp_path / "audio", n_per_freq=2)  # 12 recordings: 3 batches of 4
    args = [str(tmp_path / "audio"), str(tmp_path / "cache"), "8", str(tmp_path / "idx")]
    done = subprocess.run([sys.executable, "-c", KILL_SCRIPT, *args], capture_output=True, timeout=120)
    assert done.returncode == -9, done.stderr.decode()[-2000:]
    with sqlite3.connect(tmp_path / "idx" / "windows.sqlite") as db:
        (n_rec,) = db.execute("SELECT count(*) FROM recordings").fetchone()
        (n_win,) = db.execute("SELECT count(*) FROM windows").fetchone()
    assert 0 < n_rec < len(files) and n_rec % 4 == 0 and n_win == n_rec * 3  # whole batches, 3 windows each
    summary = build(source_items([str(tmp_path / "audio")]), tmp_path / "idx", options(tmp_path / "cache"))
    assert summary.n_known == n_rec and summary.n_new == len(files) - n_rec
    assert summary.n_recordings == len(files) and summary.n_windows == 3 * len(files)


def test_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = corpus(tmp_path / "audio", n_per_freq=1)
    cache = str(tmp_path / "cache")
    assert main(["search", str(tmp_path / "nothing"), "--text", "hi", "--cache-dir", cache]) == 2
    assert "no index here" in capsys.readouterr().err
    idx = tmp_path / "idx"
    assert main(cli_args("index", str(files[0]), out=idx, encoder="builtin", cache_dir=cache, quiet=True)) == 0
    capsys.readouterr()
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("hello")
    assert main(["search", str(idx), "--example", str(not_audio), "--cache-dir", cache, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: query example 1") and "cannot decode" in err[-1]
    assert main(["search", str(idx), "--text", "hello", "--cache-dir", cache]) == 2
    assert "has no transcripts" in capsys.readouterr().err
    (idx / "windows.sqlite").write_bytes(b"garbage" * 100)
    assert main(["search", str(idx), "--example", str(files[0]), "--cache-dir", cache]) == 2
    assert "not a readable index" in capsys.readouterr().err
    (idx / "index.json").write_text("{")
    assert main(["search", str(idx), "--example", str(files[0]), "--cache-dir", cache]) == 2
    assert "not a readable index card" in capsys.readouterr().err
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert main(cli_args("index", str(files[0]), out=other, encoder="builtin", cache_dir=cache)) == 2
    assert "is not an index" in capsys.readouterr().err


def test_cli_index_and_search_with_a_file_of_queries(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = corpus(tmp_path / "audio", n_per_freq=2)
    cache, idx = str(tmp_path / "cache"), tmp_path / "idx"
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\n" + "".join(f"{f},{freq_of(str(f))}\n" for f in files[:4]))
    args = cli_args("index", str(tmp_path / "audio"), out=idx, encoder="builtin", cache_dir=cache, window=1, hop=0.5)
    assert main([*args, "--manifest", str(manifest), "--quiet"]) == 0
    assert "added 12 recordings (36 windows" in capsys.readouterr().out
    queries = tmp_path / "q.csv"
    queries.write_text(f"example,start,end\n{files[0]},0,1\n{files[-1]},,\n")
    hits_csv = tmp_path / "hits.csv"
    argv = ["search", str(idx), "--queries", str(queries), "--top-k", "2", "--per-recording", "--exclude-source"]
    assert main([*argv, "--json", "--out", str(hits_csv), "--cache-dir", cache, "--quiet"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [h["query"] for h in lines] == [str(files[0])] * 2 + [str(files[-1])] * 2
    assert lines[0]["label"] == freq_of(str(files[0]))  # labels given by the manifest are kept
    assert all(set(h) >= {"source", "start_s", "end_s", "score"} for h in lines)
    rows = load_manifest(hits_csv, require_labels=False)  # the hits are a manifest train/evaluate read
    assert len(rows) == 4 and all(r.start_s is not None and r.end_s is not None for r in rows)


def test_the_library_never_prints(built: tuple[Path, list[Path], Path], capfd: pytest.CaptureFixture[str]) -> None:
    folder, files, cache = built
    Index.open(folder, cache_dir=cache).search(Query.by_example(files[0]))
    out, err = capfd.readouterr()
    assert out == "" and err == ""


SAMPLE = Path(__file__).resolve().parents[1] / "data" / "fsdd-sample" / "recordings"


def test_search_by_words_in_the_transcripts(tmp_path: Path, whisper_base: Path) -> None:
    clips = [SAMPLE / f"{d}_jackson_1.wav" for d in (1, 3, 7, 9)]
    opts = options(
        tmp_path / "cache",
        windows=WindowOptions(),
        transcripts=True,
        transcriber=parse_spec(f"whisper:{whisper_base}"),
    )
    summary = build(source_items([str(c) for c in clips]), tmp_path / "idx", opts)
    assert summary.n_new == 4
    index = Index.open(tmp_path / "idx", cache_dir=tmp_path / "cache")
    said = {Path(h.source).name: h.transcript for h in index.search(Query.by_text("7"), SearchOptions(top_k=4))}
    assert said["7_jackson_1.wav"] == "7", said  # Whisper writes digits as numerals
    hits = index.search(Query.by_text("7"), SearchOptions(top_k=2))
    assert Path(hits[0].source).name == "7_jackson_1.wav", hits
    assert hits[0].score > hits[1].score + 0.5  # the words themselves are said there: above mere likeness
    for words, clip in (("seven", "7_jackson_1.wav"), ("the number nine", "9_jackson_1.wav")):
        semantic = index.search(Query.by_text(words), SearchOptions(top_k=1))
        assert Path(semantic[0].source).name == clip, (words, semantic)


def test_url_sources_are_indexed_with_their_times_in_the_video(tmp_path: Path) -> None:

    from test_sources import TYPES, Server, _handler  # noqa: F401 - the same local yt-dlp server

    media = {
        "/low.wav": write_audio(tmp_path / "low.wav", tone(220, 3.0), 16_000).read_bytes(),
        "/high.wav": write_audio(tmp_path / "high.wav", tone(1660, 3.0), 16_000).read_bytes(),
    }
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    state = Server(f"http://127.0.0.1:{httpd.server_address[1]}", media)
    httpd.RequestHandlerClass = _handler(state)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        manifest = tmp_path / "urls.csv"
        manifest.write_text(f"url,start,end\n{state.url('/low.wav')},1,3\n{state.url('/high.wav')},,\n")
        # the whole file, cut here: ffmpeg's cut of an HTTP WAV lands only near the asked time (test_sources.py)
        fetch = FetchOptions(cache_dir=tmp_path / "cache", partial_downloads=False)
        summary = build(
            load_manifest(manifest, require_labels=False), tmp_path / "idx", options(tmp_path / "cache", fetch=fetch)
        )
        assert summary.n_new == 2 and not summary.failures
        index = Index.open(tmp_path / "idx", cache_dir=tmp_path / "cache")
        hits = index.search(Query.by_example(tmp_path / "low.wav"), SearchOptions(top_k=10))
        low = [h for h in hits if h.source.endswith("/low.wav")]
        assert hits[0].source == state.url("/low.wav")
        assert min(h.start_s for h in low) == pytest.approx(1.0) and max(h.end_s for h in low) == pytest.approx(3.0)
        where = index.window_audio(hits[0].window_id)  # the downloaded file, for playing the hit
        assert where is not None and Path(where.file).is_file() and where.file != hits[0].source
        assert (where.start_s, where.end_s) == (hits[0].start_s, hits[0].end_s)
        assert index.window_audio(10**9) is None
        index.fetch = fetch
        by_url = index.search(state.url("/high.wav"), top_k=1, exclude_source=True)  # an example by URL
        assert by_url and by_url[0].source != state.url("/high.wav")
        assert index.search(state.url("/high.wav"), top_k=1)[0].source == state.url("/high.wav")
        again = build(
            load_manifest(manifest, require_labels=False), tmp_path / "idx", options(tmp_path / "cache", fetch=fetch)
        )
        assert (again.n_new, again.n_known) == (0, 2)
        assert sum(state.hits.values()) > 0
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_the_python_api(tmp_path: Path) -> None:
    import audioclf

    files = corpus(tmp_path / "audio", n_per_freq=2)
    cache = tmp_path / "cache"
    index = audioclf.Index.build(tmp_path / "idx", [tmp_path / "audio"], encoder="builtin", window_s=1, cache_dir=cache)
    assert index.last_build is not None and index.last_build.n_new == len(files)
    assert len(index) == 2 * len(files)  # 2 s recordings in 1 s windows
    hits = index.search(files[0], top_k=1, per_recording=True, exclude_source=True)
    assert isinstance(hits[0], audioclf.Hit) and freq_of(hits[0].source) == freq_of(str(files[0]))
    assert hits[0].to_dict()["source"] == hits[0].source
    with pytest.raises(audioclf.AudioclfError, match="top k 0"):
        index.search(files[0], top_k=0)
    with pytest.raises(audioclf.AudioclfError, match="one of: examples"):
        index.search()
    with pytest.raises(audioclf.AudioclfError, match="no transcripts"):
        index.search(text="hello")
    again = audioclf.Index.open(tmp_path / "idx", cache_dir=cache)
    assert "12 recordings, 24 windows" in repr(again)


def test_an_encoder_whose_weights_changed_cannot_query_the_index(tmp_path: Path) -> None:
    from conftest import save_tiny_wav2vec2

    model = save_tiny_wav2vec2(tmp_path / "model", seed=0)
    files = corpus(tmp_path / "audio", n_per_freq=1)
    spec = parse_spec(f"hf:{model}")
    build(source_items([str(f) for f in files]), tmp_path / "idx", options(tmp_path / "cache", encoder=spec))
    assert Index.open(tmp_path / "idx", cache_dir=tmp_path / "cache").search(files[0], top_k=1)[0].source == str(
        files[0]
    )
    save_tiny_wav2vec2(tmp_path / "model", seed=1)  # the same folder, other weights
    with pytest.raises(CorpusError, match="now has other weights"):
        Index.open(tmp_path / "idx", cache_dir=tmp_path / "cache").search(files[0])


def test_similarity_reads_plain_strings_and_refuses_no_examples() -> None:
    from audioclf.corpus.similarity import Combine, VectorStats, combined, prepare, scores

    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 8)).astype(np.float32) * np.arange(1, 9) + 3.0
    stats = VectorStats.of(x)
    for name in ("cosine", "centered", "standardized"):
        np.testing.assert_array_equal(prepare(x, name, stats), prepare(x, Similarity(name), stats))  # type: ignore[arg-type]
    np.testing.assert_allclose(prepare(x, Similarity.STANDARDIZED, stats).mean(axis=0), 0.0, atol=0.1)
    directions = prepare(x[:3], Similarity.STANDARDIZED, stats)
    np.testing.assert_array_equal(combined(directions, "mean"), combined(directions, Combine.MEAN))
    assert combined(directions, Combine.MAX).shape == (3, 8)
    with pytest.raises(ValueError, match="no examples"):
        scores(prepare(x, Similarity.COSINE, None), np.zeros((0, 8), np.float32))
    windows = prepare(x, Similarity.STANDARDIZED, stats)
    plain = scores(windows, directions[:1])
    pushed = scores(windows, directions[:1], directions[1:2], negative_weight=0.25)
    np.testing.assert_allclose(pushed, plain - 0.25 * (windows @ directions[1]), rtol=1e-5, atol=1e-6)

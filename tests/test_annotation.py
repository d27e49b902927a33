"""Labels as data and suggestions (issue 30's first step): a real index of the built-in encoder, a real SQLite
log, real kill -9."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_corpus import corpus, freq_of, options

from audioclf.annotation.labels import Kind, Labels, Origin
from audioclf.annotation.suggest import Strategy, StrategyKind, suggest
from audioclf.corpus.card import CorpusError
from audioclf.corpus.index import Index
from audioclf.corpus.plan import build, source_items


@pytest.fixture()
def project(tmp_path: Path) -> tuple[Index, Path]:
    corpus(tmp_path / "audio", n_per_freq=3)
    build(source_items([str(tmp_path / "audio")]), tmp_path / "idx", options(tmp_path / "cache"))
    return Index.open(tmp_path / "idx", cache_dir=tmp_path / "cache"), tmp_path / "labels.csv"


def label_truly(index: Index, labels: Labels, window_ids: list[int], annotator: str = "a") -> None:
    rows = index.store.rows(window_ids)
    for w in window_ids:
        labels.add(rows[w], Kind.LABEL, freq_of(rows[w].source), annotator=annotator, origin=Origin.SUGGESTION)


def test_suggest_never_returns_a_labelled_window_and_spreads_over_recordings(project: tuple[Index, Path]) -> None:
    index, manifest = project
    labels = Labels(manifest, index.card.id)
    first = suggest(index, labels, 4, Strategy.parse("margin"))
    assert first.strategy.kind is StrategyKind.DIVERSE and first.note and "two labels" in first.note
    assert len({s.source for s in first.suggestions}) == 4  # four recordings, not four windows of one
    for _ in range(4):
        for strategy in ("margin", "entropy", "random", "diverse", "top:tone220"):
            got = suggest(index, labels, 3, Strategy.parse(strategy)) if labels.labels() else first
            assert not {s.window_id for s in got.suggestions} & labels.seen()
        before = labels.seen()
        label_truly(index, labels, [s.window_id for s in suggest(index, labels, 3).suggestions])
        assert len(labels.seen()) == len(before) + 3
    rows = [line.split(",") for line in manifest.read_text().splitlines()[1:]]
    assert len(rows) == len(labels.seen()) and all(r[1] == freq_of(r[0]) for r in rows)


def test_undo_not_and_none_answers(project: tuple[Index, Path]) -> None:
    index, manifest = project
    labels = Labels(manifest, index.card.id)
    rows = index.store.rows([1, 2, 3, 4])
    labels.add(rows[1], Kind.LABEL, "tone220", annotator="a")
    labels.add(rows[2], Kind.NONE, annotator="a")
    labels.add(rows[3], Kind.NOT, "tone220", annotator="b")
    labels.add(rows[4], Kind.LABEL, "tone330", annotator="a")
    assert labels.undo("a") is not None  # takes back the tone330 answer, not b's
    assert labels.counts() == {"tone220": 1, "none": 1}
    assert labels.negatives() == {3: {"tone220"}}
    assert manifest.read_text().count("\n") == 2  # the header and the one label standing
    with pytest.raises(CorpusError, match="needs a label"):
        labels.add(rows[4], Kind.LABEL, " ")


def test_labels_of_another_index_are_refused(project: tuple[Index, Path]) -> None:
    index, manifest = project
    Labels(manifest, index.card.id).close()
    with pytest.raises(CorpusError, match="labels are of another index"):
        Labels(manifest, "0" * 32)


def test_leases_hand_a_window_to_one_reviewer(project: tuple[Index, Path]) -> None:
    index, manifest = project
    alice, bob = Labels(manifest, index.card.id), Labels(manifest, index.card.id)
    mine = alice.lease([1, 2, 3], "alice")
    assert mine == [1, 2, 3] and bob.lease([2, 3, 4], "bob") == [4]
    got = suggest(index, bob, 50, Strategy.parse("random"), annotator="bob")
    assert not {s.window_id for s in got.suggestions} & {1, 2, 3}


KILL = """
import os, signal, sys
from audioclf.annotation.labels import Kind, Labels
from audioclf.corpus.index import Index
index = Index.open(sys.argv[1], cache_dir=sys.argv[2])
labels = Labels(sys.argv[3], index.card.id)
rows = index.store.rows(list(range(1, 11)))
for w in range(1, 6):
    labels.add(rows[w], Kind.LABEL, "x", annotator="k")
    print(w, flush=True)  # acknowledged
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_kill_9_loses_no_acknowledged_answer(project: tuple[Index, Path], tmp_path: Path) -> None:
    index, manifest = project
    args = [str(index.folder), str(index.cache_dir), str(manifest)]
    done = subprocess.run([sys.executable, "-c", KILL, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == -9, done.stderr[-2000:]
    acknowledged = [int(w) for w in done.stdout.split()]
    labels = Labels(manifest, index.card.id)
    assert sorted(labels.seen()) == acknowledged == [1, 2, 3, 4, 5]
    assert manifest.read_text().count("\n") == 6


def test_cli_suggest(project: tuple[Index, Path], capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from audioclf.cli.main import main

    index, manifest = project
    argv = ["suggest", str(index.folder), "--labels", str(manifest), "--cache-dir", str(index.cache_dir)]
    assert main([*argv, "--n", "2", "--json", "--strategy", "margin"]) == 0
    out, err = capsys.readouterr()
    got = [json.loads(line) for line in out.splitlines()]
    assert len(got) == 2 and all(g["strategy"] == "diverse" and g["guess"] is None for g in got)
    assert "needs windows of two labels" in err
    labels = Labels(manifest, index.card.id)
    label_truly(index, labels, [g["id"] for g in got] + [int(i) for i in index.exact_arrays()[0][[0, -1]]])
    assert main([*argv, "--n", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("3 suggestions (diverse); labelled so far:")  # the default
    assert all(line.split()[-2].startswith("tone") for line in out[:-1])  # each with the quick model's guess
    assert main([*argv, "--strategy", "top:nothing"]) == 2
    assert "no window is labelled nothing" in capsys.readouterr().err


def test_the_python_api_drives_the_loop(project: tuple[Index, Path]) -> None:
    import audioclf

    index, manifest = project
    labels = audioclf.Labels(manifest, index.card.id)
    first = audioclf.suggest(index, labels, 3)
    label_truly(index, labels, [s.window_id for s in first.suggestions])
    again = audioclf.suggest(index, labels, 3)
    assert not {s.window_id for s in again.suggestions} & labels.seen()
    assert sum(labels.counts().values()) == 3 and len(manifest.read_text().splitlines()) == 4


def test_a_trained_model_suggests_from_the_cli_and_the_python_api(
    project: tuple[Index, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import csv
    import json

    import audioclf
    from audioclf.cli.main import main

    index, manifest = project
    files = sorted({r.source for r in index.store.rows([int(i) for i in index.exact_arrays()[0]]).values()})
    with (tmp_path / "train.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "group"])
        writer.writerows([s, freq_of(s), Path(s).stem] for s in files)
    model = audioclf.train(
        tmp_path / "train.csv", tmp_path / "model", encoder="builtin", cache_dir=index.cache_dir, folds=2
    )
    argv = ["suggest", str(index.folder), "--labels", str(manifest), "--cache-dir", str(index.cache_dir), "--json"]
    assert main([*argv, "--n", "4", "--strategy", "top:tone495", "--model", str(model.path)]) == 0
    got = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(got) == 4 and all(g["guess"] in model.labels for g in got)  # the trained model's labels
    assert sum(freq_of(g["source"]) == "tone495" for g in got) >= 3  # its likely tone495 windows first
    opened = audioclf.Index.open(index.folder, cache_dir=index.cache_dir)
    labels = opened.labels(tmp_path / "api.csv", multi_label=True)
    first = opened.suggest(labels, 3)
    assert first.strategy is not None and str(first.strategy) == "diverse" and len(first.suggestions) == 3
    unsure = opened.suggest(labels, 3, "margin", model=model.path)
    assert str(unsure.strategy) == "margin" and all(s.guess for s in unsure.suggestions)
    assert main([*argv, "--model", str(tmp_path)]) == 2  # not a model folder: one line
    assert capsys.readouterr().err.count("\n") == 1
    assert main([*argv, "--strategy", "top:tone440", "--model", str(model.path)]) == 2
    assert "knows the labels tone1110, " in capsys.readouterr().err


def test_auto_turns_from_diverse_to_margin_once_each_label_has_a_few_windows(project: tuple[Index, Path]) -> None:
    from audioclf.annotation.suggest import AUTO_PER_LABEL, auto_strategy

    assert str(auto_strategy(0, 0)) == str(auto_strategy(9, 2)) == "diverse"
    assert str(auto_strategy(AUTO_PER_LABEL * 2, 2)) == "margin"
    index, manifest = project
    labels = Labels(manifest, index.card.id)
    assert str(suggest(index, labels, 2).strategy) == "diverse"  # the default is auto
    ids = [int(i) for i in index.exact_arrays()[0][: AUTO_PER_LABEL * 2]]
    rows = index.store.rows(ids)
    for n, w in enumerate(ids):  # two labels, five windows each
        labels.add(rows[w], Kind.LABEL, "a" if n % 2 else "b")
    assert str(suggest(index, labels, 2).strategy) == "margin"

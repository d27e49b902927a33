from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import tone, write_audio

from audioclf.encoders.loader import BuiltinEncoder
from audioclf.extraction.embed import WINDOWS_PER_CALL, embed_items
from audioclf.io.audio import WindowOptions, iter_windows, load_audio
from audioclf.io.cache import EmbeddingCache
from audioclf.io.manifest import Item


class CountingEncoder(BuiltinEncoder):
    """The real built-in encoder, recording how many windows each call received."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    def embed(self, windows: list[np.ndarray]) -> np.ndarray:
        self.calls.append(len(windows))
        return super().embed(windows)


def item(path: Path) -> Item:
    return Item(str(path), "x", None, path.name, path.name)


def test_short_clips_share_encoder_calls_and_keep_order(tmp_path: Path) -> None:
    files = [write_audio(tmp_path / f"c{i}.wav", tone(200 + 150 * i, 0.3 + 0.1 * i), 16_000) for i in range(6)]
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really audio")
    twin = tmp_path / "twin.wav"
    twin.write_bytes(files[2].read_bytes())
    items = [item(p) for p in [files[0], files[1], bad, files[2], twin, *files[3:]]]
    enc, windows = CountingEncoder(), WindowOptions()
    result = embed_items(items, enc, EmbeddingCache(tmp_path / "cache", enc.identity, windows), windows, progress=False)

    assert enc.calls == [6]  # six distinct recordings, one call; the twin is computed once
    assert [i.source for i, _ in result.embedded] == [i.source for i in items if i.source != str(bad)]
    assert [f.item.source for f in result.failures] == [str(bad)] and result.n_cached == 1
    alone = BuiltinEncoder()
    for it, emb in result.embedded:
        expected = alone.embed([w.samples for w in iter_windows(it.source, windows)])
        np.testing.assert_allclose(emb.embeddings, expected, rtol=1e-5, atol=1e-6)


def test_long_recording_streams_in_bounded_calls(tmp_path: Path) -> None:
    long = write_audio(tmp_path / "long.flac", tone(440, 20.0, noise=0.05), 16_000)
    short = write_audio(tmp_path / "short.wav", tone(300, 0.4), 16_000)
    enc, windows = CountingEncoder(), WindowOptions(window_s=0.5, hop_s=0.5)
    cache = EmbeddingCache(tmp_path / "cache", enc.identity, windows)
    result = embed_items([item(long), item(short)], enc, cache, windows, progress=False)

    assert max(enc.calls) <= WINDOWS_PER_CALL and sum(enc.calls) == 41
    (_, long_emb), (_, short_emb) = result.embedded
    assert len(long_emb.embeddings) == 40 and len(short_emb.embeddings) == 1
    np.testing.assert_allclose(long_emb.starts_s, np.arange(40) * 0.5)
    again = CountingEncoder()
    rerun = embed_items([item(long), item(short)], again, cache, windows, progress=False)
    assert again.calls == [] and rerun.n_cached == 2


def test_a_recording_that_makes_a_real_model_fail_is_skipped_and_the_batch_goes_on(
    tmp_path: Path, tiny_wav2vec2: Path
) -> None:
    """The failure comes from inside a real transformers model's forward (a hook that raises on a silent
    input), in a batch shared with other recordings: only the silent one is skipped, with its reason."""
    import torch

    from audioclf.encoders.loader import load_encoder

    files = [write_audio(tmp_path / f"c{i}.wav", tone(200 + 150 * i, 0.4), 16_000) for i in range(4)]
    silent = write_audio(tmp_path / "silent.wav", np.zeros(6_400, np.float32), 16_000)
    items = [item(p) for p in [files[0], files[1], silent, files[2], files[3]]]
    encoder = load_encoder(f"hf:{tiny_wav2vec2}", "fp32").encoder
    model: torch.nn.Module = encoder._model  # type: ignore[attr-defined]

    def refuse_silence(module: torch.nn.Module, args: tuple[torch.Tensor, ...], kwargs: dict) -> None:  # type: ignore[type-arg]
        if (kwargs["input_values"].abs().sum(-1) == 0).any():
            raise RuntimeError("injected: a silent input")

    hook = model.register_forward_pre_hook(refuse_silence, with_kwargs=True)
    windows = WindowOptions()
    try:
        result = embed_items(
            items, encoder, EmbeddingCache(tmp_path / "c", encoder.identity, windows), windows, progress=False
        )
    finally:
        hook.remove()
    assert [f.item.source for f in result.failures] == [str(silent)]
    assert "injected: a silent input" in result.failures[0].reason and "wav2vec2" in result.failures[0].reason
    assert [i.source for i, _ in result.embedded] == [str(f) for f in files]
    for it, emb in result.embedded:
        np.testing.assert_allclose(emb.embeddings, encoder.embed([load_audio(it.source)]), rtol=1e-4, atol=1e-5)

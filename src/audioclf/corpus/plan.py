"""What a user asks of a build (``IndexOptions``: specs and choices parsed once) made into a ``BuildPlan`` (the
encoder loaded, the windows fitted to it, the layer and similarity chosen), and the build run, on Ray or here."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from audioclf.corpus.build import BuildPlan, BuildSummary, build_index
from audioclf.corpus.card import CorpusError
from audioclf.corpus.similarity import DEFAULT_SIMILARITY, Similarity
from audioclf.corpus.text import WindowTexts
from audioclf.encoders.loader import fit_windows, load_encoder
from audioclf.encoders.spec import TEXT_ENCODERS, TRANSCRIBERS, ModelSpec, Precision, parse_spec
from audioclf.io.audio import WindowOptions
from audioclf.io.cache import default_cache_dir
from audioclf.io.download import FetchOptions
from audioclf.io.manifest import Item, audio_files, check_url, looks_like_url
from audioclf.speech.text import DEFAULT_TEXT_ENCODER

if TYPE_CHECKING:
    from audioclf.extraction.ray import RayOptions

log = logging.getLogger(__name__)

DEFAULT_LAYER = "last"


@dataclass(frozen=True)
class IndexOptions:
    encoder: ModelSpec | None = None  # None: the default pretrained encoder (the built-in one when offline)
    precision: Precision = Precision.AUTO
    windows: WindowOptions = field(default_factory=WindowOptions.encoder_native)
    layer: str | int = DEFAULT_LAYER  # last, middle or an index (negative counts from the end)
    similarity: Similarity = DEFAULT_SIMILARITY
    transcripts: bool = False
    transcriber: ModelSpec | None = None  # None: the encoder itself when it transcribes (Whisper, CTC)
    text_encoder: ModelSpec = DEFAULT_TEXT_ENCODER
    cache_dir: Path | None = None
    fetch: FetchOptions | None = None
    ray: RayOptions | None = None
    progress: bool = True

    @classmethod
    def parse(
        cls,
        *,
        encoder: str | None,
        precision: str,
        windows: WindowOptions,
        layer: str | int | None,
        similarity: str | None,
        transcripts: bool,
        transcriber: str | None,
        text_encoder: str,
        cache_dir: Path | None,
        fetch: FetchOptions | None = None,
        ray: RayOptions | None = None,
        progress: bool = True,
    ) -> IndexOptions:
        """The boundary (the command line, the Python API): every spec and choice given as text parsed once."""
        try:
            chosen = DEFAULT_SIMILARITY if similarity is None else Similarity(similarity)
        except ValueError:
            names = ", ".join(s.value for s in Similarity)
            raise CorpusError(f"similarity {similarity!r}: use {names}", option="similarity") from None
        return cls(
            encoder=None if encoder is None else parse_spec(encoder),
            precision=Precision.parse(precision),
            windows=windows,
            layer=DEFAULT_LAYER if layer is None else layer,
            similarity=chosen,
            transcripts=transcripts,
            transcriber=None if transcriber is None else parse_spec(transcriber, TRANSCRIBERS, "transcriber"),
            text_encoder=parse_spec(text_encoder, TEXT_ENCODERS, "text encoder"),
            cache_dir=cache_dir,
            fetch=fetch,
            ray=ray,
            progress=progress,
        )


def index_layer(choice: str | int, n_layers: int, encoder: ModelSpec) -> int:
    """``last``, ``middle`` or a layer number (negative from the end) as an index from 0 to ``n_layers - 1``."""
    if choice == "last":
        return n_layers - 1
    if choice == "middle":
        return n_layers // 2
    try:
        layer = int(choice)
    except ValueError:
        raise CorpusError(f"layer {choice!r}: use last, middle or a layer number", option="layer") from None
    if not -n_layers <= layer < n_layers:
        which = "only one layer" if n_layers == 1 else f"layers 0 to {n_layers - 1}"
        raise CorpusError(f"layer {choice}: {encoder} has {which}", option="layer")
    return layer % n_layers


def make_plan(options: IndexOptions, stop: Callable[[], bool] | None = None) -> BuildPlan:
    loaded = load_encoder(options.encoder, options.precision)
    if loaded.fallback_reason:
        log.warning("%s", loaded.fallback_reason)
    encoder = loaded.encoder
    windows = fit_windows(options.windows, encoder)
    cache_dir = options.cache_dir or default_cache_dir()
    texts = None
    if options.transcripts:
        texts = WindowTexts(options.transcriber, encoder, cache_dir, windows, options.text_encoder)
    return BuildPlan(
        encoder=encoder,
        windows=windows,
        layer=index_layer(options.layer, encoder.n_layers, encoder.spec),
        cache_dir=cache_dir,
        similarity=options.similarity,
        texts=texts,
        fetch=options.fetch or FetchOptions(cache_dir=cache_dir, max_duration_s=windows.max_duration_s),
        progress=options.progress,
        stop=stop,
    )


def build(items: Sequence[Item], out: Path, options: IndexOptions = IndexOptions()) -> BuildSummary:
    """Build or extend the index at ``out`` with ``items`` (on Ray first when asked: the workers fill the shared
    embedding cache, and this process writes the store from it)."""
    plan = make_plan(options)
    if options.ray is not None:
        from audioclf.extraction.ray import embed_on_ray

        what = (plan.encoder.spec, options.precision, plan.cache_dir, plan.windows)
        run = embed_on_ray(items, *what, fetch=plan.fetch, options=options.ray, progress=options.progress)
        log.info("on Ray: %s", run.result.summary())
    return build_index(items, out, plan)


def source_items(sources: Sequence[str]) -> list[Item]:
    """Files, folders (every audio file under them) and http(s) URLs (a playlist or channel is expanded when
    fetched) as unlabelled items; each file is its own group, a video's group is its id."""
    items: list[Item] = []
    for text in sources:
        if looks_like_url(text):
            url = check_url(text)
            items.append(Item(url, None, None, "", url))
            continue
        for file in audio_files([Path(text)]):
            src = str(file.resolve())
            items.append(Item(src, None, None, src, str(file)))
    return items

"""Model specs, parsed once: ``builtin``, ``hf:<hub id or folder>``, ``whisper:<size or folder>[?padding=audio]``,
the text encoders' ``minilm`` / ``tfidf``, and ``finetuned:<model folder>`` / ``onnx:<model folder>`` (a
fine-tuned classifier, an exported graph: never typed by a user). ``parse_spec`` is the boundary (CLI arguments,
API keywords, the environment) and the model card's reader the other place a spec is parsed; everything past
them takes a ``ModelSpec``. Likewise ``Precision``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from audioclf.errors import EncoderError

BUILTIN = "builtin"
HF = "hf"
WHISPER = "whisper"
MINILM = "minilm"
TFIDF = "tfidf"
FINETUNED = "finetuned"  # a fine-tuned transformers classifier's folder (a model folder, not an encoder a user names)
ONNX = "onnx"  # an exported model folder's ONNX graph (likewise never named by a user)
ENCODERS = (BUILTIN, HF, WHISPER)  # the kinds each place accepts
TRANSCRIBERS = (WHISPER, HF)
TEXT_ENCODERS = (MINILM, TFIDF, HF)
NAMED = frozenset({BUILTIN, MINILM, TFIDF})  # kinds that are a bare word, without a source
OPTIONS = {WHISPER: {"padding": ("full", "audio")}}  # the ?key=value options each kind accepts
EMPTY = {WHISPER: "give a size (base, small, …) or a folder: whisper:<size or folder>"}
FORMS = {
    BUILTIN: "builtin",
    HF: "hf:<hub id or local model dir>",
    WHISPER: "whisper:<size or folder>",
    MINILM: "minilm",
    TFIDF: "tfidf",
    FINETUNED: "finetuned:<model folder>",
    ONNX: "onnx:<exported model folder>",
}


@dataclass(frozen=True)
class ModelSpec:
    kind: str  # builtin | hf | whisper | minilm | tfidf | finetuned | onnx
    source: str = ""  # a hub id, a folder or a Whisper size; empty for the named kinds
    options: tuple[tuple[str, str], ...] = ()  # sorted (key, value) pairs from ?key=value&...

    @classmethod
    def parse(cls, text: str, kinds: Iterable[str] = ENCODERS, what: str = "encoder") -> ModelSpec:
        """One spec string into its parts; one error naming the accepted forms for anything else."""
        kinds = tuple(kinds)
        text = text.strip()
        kind, colon, rest = text.partition(":")
        if not colon:
            kind, rest = text, ""
        source, _, query = rest.partition("?")
        if kind in kinds and kind in EMPTY and colon and not source:
            raise EncoderError(f"{text!r}: {EMPTY[kind]}")
        if kind not in kinds or (kind in NAMED) == bool(colon) or (kind not in NAMED and not source):
            forms = ", ".join(f"'{FORMS[k]}'" for k in kinds)
            raise EncoderError(f"unknown {what} {text!r}; use {forms}")
        return cls(kind, source, _options(text, kind, query))

    def option(self, key: str, default: str) -> str:
        return dict(self.options).get(key, default)

    def __str__(self) -> str:
        if self.kind in NAMED:
            return self.kind
        query = "&".join(f"{k}={v}" for k, v in self.options)
        return f"{self.kind}:{self.source}" + (f"?{query}" if query else "")


def parse_spec(text: str | ModelSpec, kinds: Iterable[str] = ENCODERS, what: str = "encoder") -> ModelSpec:
    """The boundary: a spec as a user gives it (a CLI argument, an API keyword, an environment variable) as a
    ``ModelSpec`` (one already parsed is returned as it is)."""
    return text if isinstance(text, ModelSpec) else ModelSpec.parse(text, kinds, what)


class Precision(StrEnum):
    """The precision an encoder embeds in: ``auto`` (bf16 where the CPU/GPU supports it), ``bf16`` or ``fp32``."""

    AUTO = "auto"
    BF16 = "bf16"
    FP32 = "fp32"

    @classmethod
    def parse(cls, text: str | Precision) -> Precision:
        try:
            return cls(text)
        except ValueError:
            raise EncoderError(f"precision {text!r}: use auto, bf16 or fp32") from None


def _options(text: str, kind: str, query: str) -> tuple[tuple[str, str], ...]:
    allowed = OPTIONS.get(kind, {})
    pairs = []
    for part in filter(None, query.split("&")):
        key, _, value = part.partition("=")
        if key not in allowed or value not in allowed[key]:
            accepted = " or ".join(f"?{k}={v}" for k, values in allowed.items() for v in values)
            raise EncoderError(f"{text}: the only option is {accepted}" if accepted else f"{text}: takes no options")
        pairs.append((key, value))
    return tuple(sorted(pairs))

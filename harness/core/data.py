"""Data types that flow between benchmarks, samplers, engines and the trainer.

Everything the trainer sees is token ids: a benchmark turns its text into a :class:`Prompt` (ids plus
the text and whatever it needs later to score, in ``meta``), samplers pair prompts with responses
into :class:`Row` objects, and the log-prob engine turns a batch of rows into a
:class:`~harness.models.logprobs.LogProbBatch` for the method's objective.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.digest import FULL, Hasher, digest
from harness.core.errors import HarnessError


@dataclass(frozen=True)
class Prompt:
    """A tokenised prompt. ``meta`` carries what scoring needs (a reference answer, tests, an id)."""

    ids: tuple[int, ...]
    text: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Sequence:
    """A prompt and one response to it, as token ids (the response excludes the prompt)."""

    prompt: Prompt
    response: tuple[int, ...]


@dataclass(frozen=True)
class Pair:
    """A preference pair: ``chosen`` is preferred over ``rejected`` for ``prompt``."""

    prompt: Prompt
    chosen: tuple[int, ...]
    rejected: tuple[int, ...]


@dataclass(frozen=True)
class Completion:
    """One generated response: its token ids, decoded text and why generation stopped."""

    prompt: Prompt
    ids: tuple[int, ...]
    text: str
    finish_reason: str = "length"  # "stop" (stop string or EOS) | "length"

    def as_sequence(self) -> Sequence:
        return Sequence(self.prompt, self.ids)


@dataclass(frozen=True)
class Row:
    """One training example of a method: named sequences (roles) and named scalars.

    SFT uses ``{"demo": ...}``; DPO ``{"chosen": ..., "rejected": ...}``; GSIL ``{"real": ...,
    "generated": ...}``; a policy-gradient method ``{"sample": ...}`` with ``values={"reward": r}``.
    Every row of one training set has the same roles and value names.
    """

    seqs: Mapping[str, Sequence]
    values: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Feedback:
    """Unpaired feedback: one response to ``prompt`` labelled desirable (True) or undesirable (False), as
    KTO trains on (TRL's ``prompt`` / ``completion`` / ``label`` format)."""

    prompt: Prompt
    completion: tuple[int, ...]
    desirable: bool


# Data kinds a benchmark can provide and a method can need.
DEMONSTRATIONS = "demonstrations"  # list[Sequence]
PREFERENCES = "preferences"  # list[Pair]
PROMPTS = "prompts"  # list[Prompt]
REWARD = "reward"  # a reward(prompt, completion) -> float function
FEEDBACK = "feedback"  # list[Feedback]; implied by preferences (each pair: a desirable and an undesirable one)
DATA_KINDS = (DEMONSTRATIONS, PREFERENCES, PROMPTS, REWARD, FEEDBACK)


def implied_kinds(provides: frozenset[str] | set[str]) -> frozenset[str]:
    """What a source of these kinds can give: preference pairs also give unpaired feedback."""
    return frozenset(provides) | ({FEEDBACK} if PREFERENCES in provides else set())


def unpair(pairs: list[Pair]) -> list[Feedback]:
    """Each pair as two feedback rows: its chosen response desirable, its rejected one undesirable (the
    conversion TRL's ``unpair_preference_dataset`` makes for KTO)."""
    out: list[Feedback] = []
    for p in pairs:
        out += [Feedback(p.prompt, p.chosen, True), Feedback(p.prompt, p.rejected, False)]
    return out


def read_jsonl(path: str | Path, *, required: tuple[str, ...] = (),
               types: dict[str, type | tuple[type, ...]] | None = None) -> Iterator[dict[str, Any]]:
    """Yield the rows of a JSONL file (gzip-compressed when its name ends in ``.gz``); a line that is not UTF-8
    (with its byte offset), not JSON, or lacks a field (or has one of the wrong type, per ``types``) is a
    one-line error naming file:line."""
    path = Path(path)
    if not path.exists():
        raise HarnessError(f"{path}: no such file; pass an existing local JSONL path")
    offset = 0
    with (gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb")) as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise HarnessError(f"{path}:{lineno}: not UTF-8 text (byte offset {offset + exc.start}); save the "
                                   f"file as UTF-8") from None
            offset += len(raw)
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise HarnessError(f"{path}:{lineno}: not valid JSON ({exc.msg}); fix or remove the line") from None
            if not isinstance(row, dict):
                raise HarnessError(f"{path}:{lineno}: expected a JSON object per line")
            missing = [k for k in required if k not in row]
            if missing:
                raise HarnessError(
                    f"{path}:{lineno}: missing field(s) {', '.join(missing)}; each row needs {', '.join(required)}"
                )
            for k, kind in (types or {}).items():
                if k in row and (not isinstance(row[k], kind) or isinstance(row[k], bool) and kind is not bool):
                    names = " or ".join(t.__name__ for t in (kind if isinstance(kind, tuple) else (kind,)))
                    raise HarnessError(f"{path}:{lineno}: field {k} is {json.dumps(row[k])[:40]}, expected {names}; "
                                       f"fix or remove the line")
            yield row


def rows_sha256(rows: Iterable[Mapping[str, Any]]) -> str:
    """SHA-256 (hex) of rows written as JSONL the canonical way: ``json.dumps(row) + "\\n"`` per row.

    A file written that way (GSM8K's, HumanEval's and FastChat's MT-Bench files are) hashes to its own
    ``sha256sum``; the same rows read from another copy (gzip-compressed, reformatted, or the hub) hash the
    same, and any changed row changes the hash."""
    h = Hasher()
    for row in rows:
        h.update(json.dumps(dict(row)).encode() + b"\n")  # as written to the file: keys in their order
    return h.hex(FULL)


DATA_COPIES = ("embedded", "path", "hub")
"""Where a benchmark's data came from: shipped with the package, the user's ``path``, or the hub."""


@dataclass(frozen=True)
class DataCopy:
    """Which copy of its data an evaluation read: ``copy`` (one of :data:`DATA_COPIES`), ``source`` (a
    folder, file or hub dataset name) and ``parts`` (part name -> :func:`rows_sha256` of its rows, e.g.
    ``{"train": .., "test": ..}``). Benchmarks return it in :attr:`EvalResult.data`; the harness records it."""

    copy: str
    source: str
    parts: Mapping[str, str]

    def __post_init__(self) -> None:
        if self.copy not in DATA_COPIES:
            raise HarnessError(f"DataCopy.copy must be one of {', '.join(DATA_COPIES)}, got {self.copy!r}")

    @property
    def sha256(self) -> str:
        """One hash of the whole copy: the part's own hash when there is one part, else the SHA-256 of the
        sorted ``name:hash`` lines."""
        if len(self.parts) == 1:
            return next(iter(self.parts.values()))
        return digest("".join(f"{k}:{v}\n" for k, v in sorted(self.parts.items())), FULL)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form stored with an evaluation."""
        return {"copy": self.copy, "source": self.source, "sha256": self.sha256, "parts": dict(self.parts)}

    def describe(self) -> str:
        """One line for logs, e.g. ``embedded copy (sha256 3730d312f6e3)``."""
        where = "" if self.copy == "embedded" else f" {self.source}"
        return f"{self.copy} copy{where} (sha256 {self.sha256[:12]})"

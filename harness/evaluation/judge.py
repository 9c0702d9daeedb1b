"""LLM-as-a-judge helpers shared by judged benchmarks (MT-Bench first): a judge built from any
registered engine, chat prompts with a plain-text fallback, FastChat's rating parser, and an on-disk
cache of judgments.

**Judges** (:func:`make_judge`). ``engine`` names any registered engine:

- ``"openai"`` (default of MT-Bench): an OpenAI-compatible endpoint ``base_url`` serving ``model``;
  the judge conversation goes out as chat ``messages`` (``Prompt.meta["messages"]``), the API key is
  read from ``api_key_env``;
- ``"hf"``: a local model loaded with :func:`harness.models.loading.load_model` (``model`` is any name it
  takes: ``smollm2-135m``, a hub name, a directory, a ``.gguf`` file) on the evaluated model's device;
  loaded once per process and kept (:data:`_LOADED`);
- ``"self"``: the evaluated model itself (the evaluation's engine and tokenizer). Its weights change
  while training and have no name, so its judgments are **never cached**;
- any other registered engine (e.g. ``vllm``): ``make_engine(registry, engine, model)``.

**Prompts** (:func:`chat_prompt`). With a chat template, ids are
``tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
return_dict=False)``; a template that refuses a ``system`` turn (Gemma-style) gets the system text
merged into the first user turn. Without a template the conversation is rendered as plain text,
``"<system>\\n\\nUser: ...\\nAssistant: ...\\nUser: ...\\nAssistant:"`` after the BOS token, and
generation should stop at :data:`PLAIN_STOP` (``"\\nUser:"``) so the model does not write the next user
turn. ``meta["messages"]`` always carries the conversation for API engines.

**Ratings** (:func:`parse_rating`): FastChat ``llm_judge/common.py``: ``[[x]]`` via
``\\[\\[(\\d+\\.?\\d*)\\]\\]``, else the single-bracket fallback ``\\[(\\d+\\.?\\d*)\\]``, value by
``ast.literal_eval``; no match gives ``-1``. One deviation: a number ``literal_eval`` rejects
(``[[07]]``) is read with ``float()`` instead of crashing.

**Cache** (:class:`JudgmentCache`): one JSON file per key under ``$HARNESS_CACHE/judgments/``
(default ``results/cache/judgments``), ``<key[:2]>/<key>.json``, written atomically (temp file +
rename), so parallel workers can share it. The key is a SHA-256 of everything that determines a
judgment: the judge's identity (engine, model, endpoint), the full judge messages (which hold the
question, the answer, any reference answer and the judge prompt's text), the decoding settings and the
repeat index.
"""

from __future__ import annotations

import ast
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.data import Prompt
from harness.core.digest import FULL, digest
from harness.core.errors import HarnessError
from harness.models.text import raw_ids

ONE_SCORE_PATTERN = re.compile(r"\[\[(\d+\.?\d*)\]\]")
ONE_SCORE_PATTERN_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")
PLAIN_STOP = "\nUser:"
_ROLE_LABELS = {"user": "User", "assistant": "Assistant"}

# (engine, model, device, dtype) -> (loaded model, engine): local judges are loaded once per process.
_LOADED: dict[tuple[str, str, str, str], tuple[Any, Any]] = {}


def parse_rating(judgment: str) -> float:
    """The ``[[rating]]`` in a judgment (FastChat's regex, then its single-bracket fallback); -1 if none."""
    match = ONE_SCORE_PATTERN.search(judgment) or ONE_SCORE_PATTERN_BACKUP.search(judgment)
    if not match:
        return -1.0
    text = match.groups()[0]
    try:
        return float(ast.literal_eval(text))
    except (ValueError, SyntaxError):  # e.g. "07": FastChat would raise here
        return float(text)


def plain_chat(messages: Sequence[Mapping[str, str]]) -> str:
    """The no-template rendering: system text, then ``User: ...`` / ``Assistant: ...`` lines, ending
    with ``Assistant:`` (see the module docstring)."""
    parts: list[str] = []
    head = ""
    for m in messages:
        if m["role"] == "system":
            head += m["content"].rstrip("\n") + "\n\n"
        else:
            parts.append(f"{_ROLE_LABELS.get(m['role'], m['role'].title())}: {m['content']}")
    return head + "\n".join([*parts, "Assistant:"])


def chat_prompt(tokenizer: Any, messages: Sequence[Mapping[str, str]], meta: Mapping[str, Any] | None = None) -> Prompt:
    """A :class:`Prompt` asking for the next assistant turn of ``messages`` (see the module docstring).

    ``tokenizer=None`` (an API judge) gives a prompt without ids. ``meta`` gains ``messages`` and
    ``plain_chat`` (True when the plain-text fallback was used: stop at :data:`PLAIN_STOP`).
    """
    msgs = [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]
    last_user = next((m["content"] for m in reversed(msgs) if m["role"] == "user"), "")
    has_template = tokenizer is not None and bool(getattr(tokenizer, "chat_template", None))
    out_meta = {**(meta or {}), "messages": msgs, "plain_chat": tokenizer is not None and not has_template}
    if tokenizer is None:
        return Prompt(ids=(), text=last_user, meta=out_meta)
    if has_template:
        ids = _apply_template(tokenizer, msgs)
    else:
        ids = raw_ids(tokenizer, plain_chat(msgs))
    return Prompt(ids=tuple(int(i) for i in ids), text=last_user, meta=out_meta)


def _apply_template(tokenizer: Any, msgs: list[dict[str, str]]) -> list[int]:
    def render(conv: list[dict[str, str]]) -> list[int]:
        ids = tokenizer.apply_chat_template(conv, add_generation_prompt=True, tokenize=True, return_dict=False)
        if isinstance(ids, Mapping):  # some tokenizers return a BatchEncoding regardless
            ids = ids["input_ids"]
        return list(ids)

    try:
        return render(msgs)
    except Exception as exc:  # noqa: BLE001 - jinja raises its own TemplateError for refused roles
        if not msgs or msgs[0]["role"] != "system" or len(msgs) < 2:
            raise HarnessError(f"the chat template cannot render this conversation: {exc}") from None
        merged = [{"role": msgs[1]["role"], "content": msgs[0]["content"] + "\n\n" + msgs[1]["content"]}]
        try:
            return render(merged + msgs[2:])
        except Exception as exc2:  # noqa: BLE001
            raise HarnessError(f"the chat template cannot render this conversation: {exc2}") from None


@dataclass
class Judge:
    """A judging model: ``name`` for records, ``key`` for the cache (adds the endpoint), its engine and
    the tokenizer that builds its prompt ids (None for API engines)."""

    name: str
    key: str
    engine: Any
    tokenizer: Any = None
    cacheable: bool = True

    def generate(
        self,
        conversations: Sequence[Sequence[Mapping[str, str]]],
        *,
        temperature: float,
        max_new_tokens: int,
        seed: int | None = None,
    ) -> list[str]:
        """One judgment text per conversation (the judge's next assistant turn), in order."""
        if not conversations:
            return []
        prompts = [chat_prompt(self.tokenizer, c) for c in conversations]
        stop = (PLAIN_STOP,) if any(p.meta.get("plain_chat") for p in prompts) else ()
        outs = self.engine.generate(
            prompts, n=1, temperature=temperature, max_new_tokens=max_new_tokens, stop=stop, seed=seed
        )
        return [o[0].text for o in outs]


def make_judge(
    engine: str,
    model: str | None = None,
    *,
    base_url: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    timeout: float = 120.0,
    self_engine: Any = None,
    self_tokenizer: Any = None,
    device: str = "cpu",
    dtype: str = "auto",
    registry: Any = None,
) -> Judge:
    """A :class:`Judge` (see the module docstring); bad settings are one-line errors."""
    if engine == "self":
        if self_engine is None:
            raise HarnessError("judge 'self' needs the evaluated model's engine; none was given")
        return Judge("self", "self", self_engine, self_tokenizer, cacheable=False)
    if not model:
        raise HarnessError(f"judge engine '{engine}' needs a model: --set judge_model=<name>")
    from harness.engines.factory import make_engine

    if registry is None:
        from harness.core.plugins import get_host

        registry = get_host().registry
    if engine == "openai":
        if not base_url:
            raise HarnessError("judge engine 'openai' needs --set judge_base_url=http://host:port/v1")
        eng = make_engine(
            registry, "openai", None, base_url=base_url, remote_model=model, api_key_env=api_key_env,
            timeout=timeout,
        )
        return Judge(f"openai:{model}", f"openai:{model}@{base_url.rstrip('/')}", eng, None)
    if engine == "hf":
        slot = ("hf", model, str(device), dtype)
        if slot not in _LOADED:
            from harness.models.loading import load_model

            loaded = load_model(model, device=str(device), dtype=dtype)
            _LOADED.clear()  # keep one local judge in memory at a time
            _LOADED[slot] = (loaded, make_engine(registry, "hf", loaded))
        loaded, eng = _LOADED[slot]
        return Judge(f"hf:{model}", f"hf:{model}", eng, loaded.tokenizer)
    eng = make_engine(registry, engine, model)
    tokenizer = getattr(eng, "tokenizer", None)
    if tokenizer is None and hasattr(eng, "llm"):  # vLLM
        tokenizer = eng.llm.get_tokenizer()
    return Judge(f"{engine}:{model}", f"{engine}:{model}", eng, tokenizer)


def judge_cache_root() -> Path:
    """``<cache>/judgments`` (see :mod:`harness.core.paths`; with the cache off, a temporary folder removed at exit)."""
    from harness.core.paths import cache_root, models_dir

    root = cache_root()
    return root / "judgments" if root is not None else models_dir() / "judgments"


def cache_key(**parts: Any) -> str:
    """SHA-256 (hex) of the JSON of ``parts`` with sorted keys."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)  # non-ASCII kept: not canonical_json
    return digest(blob, FULL)


class JudgmentCache:
    """Judgments on disk, one JSON file per key (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else judge_cache_root()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        path = self._path(key)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError):  # a damaged entry is treated as missing
            return None

    def put(self, key: str, value: Mapping[str, Any]) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(dict(value), ensure_ascii=False), encoding="utf-8")
        tmp.replace(path)


__all__ = [
    "Judge",
    "JudgmentCache",
    "ONE_SCORE_PATTERN",
    "ONE_SCORE_PATTERN_BACKUP",
    "PLAIN_STOP",
    "cache_key",
    "chat_prompt",
    "judge_cache_root",
    "make_judge",
    "parse_rating",
    "plain_chat",
]

"""Training data from datasets: named ones (plugins), ``hf:<org/name>[:config][@split]`` and local files.

A dataset gives a cell its training data instead of a benchmark; the cell is then evaluated on its
``eval`` benchmarks only. Rows are read with the ``datasets`` library (hub, local Parquet / CSV; local JSON / JSONL
as written, see :func:`_json_rows`) in the shapes TRL users already have:

- conversational ``messages``: a demonstration (the last assistant turn is the response, the earlier
  turns the prompt); its prompt alone for prompt-only use;
- ``prompt`` / ``completion``: a demonstration, as plain text or as message lists;
- ``prompt`` / ``chosen`` / ``rejected``: a preference pair, plain text ("standard") or message lists
  ("conversational"; the prompt may be implicit: then it is the chosen conversation minus its last turn);
  the chosen response also serves as a demonstration, and each pair as unpaired feedback (chosen
  desirable, rejected undesirable);
- ``prompt`` / ``completion`` / ``label``: unpaired feedback (KTO's format): ``label`` true for a
  desirable completion, false for an undesirable one (JSON booleans; 0/1 or "true"/"false" in CSV).
  Such rows are not demonstrations (half of them are bad examples);
- ``prompt`` only: prompts for on-policy methods (with a suite's ``reward = ...``).

Message lists go through the model's chat template; plain-text prompts are encoded raw, as the benchmarks'
few-shot prompts are (``chat = true`` renders them as one user turn instead). A bad row is one
:class:`HarnessError` naming the file (or hub id), the row and the column.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.core import hub
from harness.core.data import DEMONSTRATIONS, FEEDBACK, PREFERENCES, PROMPTS, Feedback, Pair, Prompt, Sequence
from harness.core.digest import Hasher
from harness.core.errors import HarnessError, unknown_name
from harness.core.params import apply_overrides
from harness.core.registry import DATASET_ROLES, BenchmarkSpec, DatasetParams, DatasetSpec

if TYPE_CHECKING:
    from harness.core.context import DataContext, EvalContext, EvalResult
    from harness.core.registry import Registry
    from harness.models.text import PromptEncoder

EXTENSIONS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
HF_PREFIX = "hf:"
ALL_KINDS = frozenset({DEMONSTRATIONS, PREFERENCES, PROMPTS, FEEDBACK})


# -- naming a dataset -----------------------------------------------------------------------------------------


def is_dataset_ref(name: str, reg: Registry) -> bool:
    """Whether ``name`` names a dataset: registered, ``hf:...`` or a local path."""
    return name in reg.specs["dataset"] or name.startswith(HF_PREFIX) or _looks_like_path(name)


def _looks_like_path(name: str) -> bool:
    return "/" in name or "\\" in name or Path(name).suffix.lower() in EXTENSIONS or Path(name).exists()


def lookup(name: str, reg: Registry, where: str = "") -> DatasetSpec:
    """The spec of a registered dataset, of ``hf:<org/name>[:config][@split]``, or of a local file or folder."""
    if name in reg.specs["dataset"]:
        return reg.dataset(name)
    pre = f"{where}: " if where else ""
    if name.startswith(HF_PREFIX):
        m = re.fullmatch(r"hf:([^:@\s]+)(?::([^@\s]+))?(?:@(\S+))?", name)
        if not m:
            raise HarnessError(f"{pre}'{name}': expected hf:<org/name>[:config][@split], e.g. "
                               f"hf:HuggingFaceH4/ultrachat_200k@train_sft")
        return DatasetSpec(name=name, description=f"hub dataset {m.group(1)}", provides=ALL_KINDS, hub=m.group(1),
                           config=m.group(2), split=m.group(3) or "train")
    if _looks_like_path(name):
        p = Path(name)
        if not p.exists():
            raise HarnessError(f"{pre}{name}: no such file or folder; give a local JSON/JSONL/Parquet/CSV file, "
                               f"hf:<org/name>, or a dataset from `harness datasets`")
        return DatasetSpec(name=name, description=f"local file {name}", provides=ALL_KINDS, path=name)
    raise unknown_name("dataset", name, reg.specs["dataset"], where)


def dataset_params(overrides: Mapping[str, Any], *, where: str) -> DatasetParams:
    """Strict :class:`DatasetParams` from a suite's ``[data]`` table or ``--set data.k=v`` keys.

    ``columns`` may be a table (``{prompt = "question"}``), ``role=column`` strings, or ``columns.<role>`` keys.
    """
    over = dict(overrides)
    cols: dict[str, str] = {}
    raw = over.pop("columns", None)
    if isinstance(raw, Mapping):
        cols.update({str(k): v for k, v in raw.items()})
    elif isinstance(raw, str):
        raw = [x for x in raw.split(",") if x.strip()]
    if isinstance(raw, (list, tuple)):
        for item in raw:
            role, sep, col = str(item).partition("=")
            if not sep:
                raise HarnessError(f"{where}: columns: expected role=column, got {item!r}")
            cols[role.strip()] = col.strip()
    elif raw is not None and not isinstance(raw, Mapping):
        raise HarnessError(f"{where}: columns: expected a table of role = \"column\", got {raw!r}")
    for key in [k for k in over if k.startswith("columns.")]:
        cols[key.split(".", 1)[1]] = over.pop(key)
    for role, col in cols.items():
        if role not in DATASET_ROLES:
            raise HarnessError(f"{where}: columns.{role}: unknown role; roles: {', '.join(DATASET_ROLES)}")
        if not isinstance(col, str) or not col:
            raise HarnessError(f"{where}: columns.{role}: expected a column name, got {col!r}")
    if cols:
        over["columns"] = tuple(f"{r}={c}" for r, c in sorted(cols.items()))
    return apply_overrides(DatasetParams, over, where=where, from_string=True)


def _columns(spec: DatasetSpec, params: DatasetParams) -> dict[str, str]:
    cols = {r: r for r in DATASET_ROLES}
    cols.update(spec.columns)
    cols.update(dict(item.split("=", 1) for item in params.columns))
    return cols


def _file_hash(path: Path) -> str:
    h = Hasher()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix.lower() in EXTENSIONS)
    for f in files:
        h.update(f.name.encode())
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hex(10)


def provides(spec: DatasetSpec, params: DatasetParams) -> frozenset[str]:
    """What a dataset gives with these params: its kinds (a local file's, from its columns), plus
    ``reward`` when the params choose one. Reads at most the first row of a local file; never the hub."""
    kinds = set(spec.provides)
    path = params.path or spec.path
    if path and not spec.transform:
        cols = _columns(spec, params)
        names = set(_load(spec, params, None, peek=True).column_names)
        _check_columns(spec, params, cols, names, path)
        kinds = set()
        labelled = cols["label"] in names and cols["completion"] in names
        if labelled:
            kinds.add(FEEDBACK)
        elif cols["messages"] in names or cols["completion"] in names:
            kinds.add(DEMONSTRATIONS)
        if cols["chosen"] in names and cols["rejected"] in names:
            kinds |= {PREFERENCES, DEMONSTRATIONS}
        if kinds or cols["prompt"] in names:
            kinds.add(PROMPTS)
        if not kinds:
            found = ", ".join(sorted(names))
            raise HarnessError(
                f"dataset '{spec.name}': {path}: no column for any role (found: {found}); map yours with "
                f"data.columns, e.g. --set data.columns.prompt={sorted(names)[0]} (roles: {', '.join(DATASET_ROLES)})")
    if params.reward:
        kinds.add("reward")
    return frozenset(kinds)


def _check_columns(spec: DatasetSpec, params: DatasetParams, cols: dict[str, str], names: set[str],
                   path: str) -> None:
    """A local file's columns against the mapping: an empty file, or a mapped column it lacks, is one line
    naming the columns found (a misspelled ``data.columns.completion`` would otherwise just drop a kind)."""
    found = ", ".join(sorted(names)) or "none"
    if not names:
        raise HarnessError(f"dataset '{spec.name}': {path}: no rows (an empty file); give a file with rows of "
                           f"{', '.join(DATASET_ROLES)} columns (or map yours with data.columns)")
    mapped = {**spec.columns, **dict(item.split("=", 1) for item in params.columns)}
    for role, col in sorted(mapped.items()):
        if col not in names and role in DATASET_ROLES:
            from difflib import get_close_matches

            close = get_close_matches(col, sorted(names), n=1)
            raise HarnessError(
                f"dataset '{spec.name}': data.columns.{role} = '{col}': {path} has no such column (found: {found})"
                + (f"; did you mean '{close[0]}'?" if close else ""))


# -- loading --------------------------------------------------------------------------------------------------


def _source(spec: DatasetSpec, params: DatasetParams, split: str) -> str:
    path = params.path or spec.path
    if path:
        return path
    return (f"{spec.hub}" + (f":{spec.config}" if spec.config else "") + (f"/{spec.data_dir}" if spec.data_dir else "")
            + f"@{split}")


def _split(spec: DatasetSpec, params: DatasetParams, kind: str | None) -> str:
    return params.split or (spec.splits.get(kind, "") if kind else "") or spec.split


def _local_files(p: Path, split: str) -> list[Path]:
    if p.is_file():
        return [p]
    files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in EXTENSIONS)
    named = [f for f in files if f.stem == split or f.stem.startswith(f"{split}-") or f.parent.name == split]
    return named or files


def _load(spec: DatasetSpec, params: DatasetParams, kind: str | None, *, peek: bool = False) -> Any:
    """The rows of the dataset's split for ``kind`` as a ``datasets.Dataset`` (``peek``: the first row only)."""
    split = _split(spec, params, kind)
    path = params.path or spec.path
    if path:
        p = Path(path)
        if not p.exists():
            raise HarnessError(f"dataset '{spec.name}': {p}: no such file or folder; give a local "
                               f"JSON/JSONL/Parquet/CSV file (--set data.path=FILE)")
        files = _local_files(p, split)
        if not files:
            raise HarnessError(f"dataset '{spec.name}': {p}: no .jsonl/.json/.parquet/.csv files in it")
        kinds = {EXTENSIONS[f.suffix.lower()] for f in files}
        if len(kinds) > 1:
            raise HarnessError(f"dataset '{spec.name}': {p}: mixes {', '.join(sorted(kinds))} files; keep one format")
        builder = kinds.pop()
        ds = _json_rows(files) if builder == "json" else _load_files(files, builder)
    else:
        hint = f" ({spec.offline_hint})" if spec.offline_hint else ""
        ds = hub.load_split(spec.hub, spec.config, split, data_dir=spec.data_dir, where=f"dataset '{spec.name}'",
                            hint=f"point it at a local copy with --set data.path=FILE_OR_FOLDER{hint}")
    limit = 1 if peek else (params.limit if params.limit is not None else spec.limit)
    if limit is not None and limit < len(ds):
        ds = ds.select(range(limit))
    return ds


class _RowList:  # noqa: N801 - a list of rows with the slice of datasets.Dataset's interface we use
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.column_names = sorted({k for r in rows for k in r})

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Any:
        return iter(self.rows)

    def select(self, idx: range) -> _RowList:
        return _RowList([self.rows[i] for i in idx])


def _json_rows(files: list[Path]) -> _RowList:
    """JSON / JSONL rows as written: no type inference across rows (which would turn " 42" into 42 or fail
    on one mistyped row), so a bad row is reported as the row it is. A .json file holds a list of objects.
    Read once per process while the files are unchanged."""
    key = tuple((str(f.resolve()), f.stat().st_mtime_ns, f.stat().st_size) for f in files)
    if key not in _JSON_CACHE:
        _JSON_CACHE.clear()  # one dataset at a time: a cell reads one training set
        _JSON_CACHE[key] = _read_json_rows(files)
    return _JSON_CACHE[key]


_JSON_CACHE: dict[tuple[tuple[str, int, int], ...], _RowList] = {}


def _read_json_rows(files: list[Path]) -> _RowList:
    import json

    from harness.core.data import read_jsonl

    rows: list[dict[str, Any]] = []
    for f in files:
        if f.suffix.lower() == ".jsonl":
            rows += list(read_jsonl(f))
            continue
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise HarnessError(f"{f}:{exc.lineno}: not valid JSON ({exc.msg}); fix the file") from None
        if isinstance(data, dict) and all(isinstance(v, list) for v in data.values()):  # {"col": [...], ...}
            n = len(next(iter(data.values()), []))
            data = [{k: v[i] for k, v in data.items()} for i in range(n)]
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise HarnessError(f"{f}: expected a JSON list of objects (one per row), or JSONL; fix the file")
        rows += data
    return _RowList(rows)


def _load_files(files: list[Path], builder: str) -> Any:
    import datasets

    datasets.disable_progress_bars()  # the harness shows its own progress
    try:
        extra = {"features": _csv_text_features(files[0])} if builder == "csv" else {}
        return datasets.load_dataset(builder, data_files=[str(f) for f in files], split="train", **extra)
    except Exception as exc:  # noqa: BLE001 - the datasets library raises many kinds
        first = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise HarnessError(f"{', '.join(map(str, files))}: cannot read as {builder} ({first}); fix the file") from None


def _csv_text_features(path: Path) -> Any:
    """Every CSV column as text (" 42" stays the string it is, not a number)."""
    import csv

    import datasets

    with path.open(encoding="utf-8", newline="") as fh:
        header = next(csv.reader(fh), [])
    return datasets.Features({c: datasets.Value("string") for c in header})


# -- rows -> Sequence / Pair / Prompt ---------------------------------------------------------------------------


class _Rows:
    """Converts one split's rows to the harness's data types, with errors that name the row and column."""

    def __init__(self, spec: DatasetSpec, params: DatasetParams, ds: Any, encoder: PromptEncoder, split: str):
        self.spec, self.params, self.ds, self.encoder = spec, params, ds, encoder
        self.cols = _columns(spec, params)
        self.source = _source(spec, params, split)
        self.chat = params.chat if params.chat is not None else spec.chat
        self.names = set(ds.column_names)

    def fail(self, i: int, msg: str) -> HarnessError:
        return HarnessError(f"{self.source}: row {i + 1}: {msg}")

    def has(self, role: str, row: Mapping[str, Any] | None = None) -> bool:
        col = self.cols[role]
        return (col in row) if row is not None else (col in self.names)

    def get(self, i: int, row: Mapping[str, Any], role: str, *, need: str) -> Any:
        col = self.cols[role]
        value = row.get(col)
        if value is None:
            mapped = f" (mapped from role '{role}')" if col != role else ""
            raise self.fail(i, f"column '{col}'{mapped} is missing or empty; {need} (map another column with "
                               f"--set data.columns.{role}=NAME)")
        return value

    def messages(self, i: int, value: Any, col: str) -> list[dict[str, str]] | None:
        """A message list (checked), or None for a plain string."""
        if isinstance(value, str):
            return None
        if not isinstance(value, list) or not value:
            raise self.fail(i, f"column '{col}' should be a string or a non-empty list of {{role, content}} "
                               f"messages, got {type(value).__name__}")
        out = []
        for j, m in enumerate(value):
            if not isinstance(m, Mapping) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
                raise self.fail(i, f"column '{col}' message {j + 1} should be {{\"role\": str, \"content\": str}}, "
                                   f"got {m!r:.80}")
            out.append({"role": m["role"], "content": m["content"]})
        return out

    def text(self, i: int, value: Any, col: str) -> str:
        msgs = self.messages(i, value, col)
        if msgs is None:
            return value
        if msgs[-1]["role"] != "assistant":
            raise self.fail(i, f"column '{col}': the last message is '{msgs[-1]['role']}', expected 'assistant'")
        return msgs[-1]["content"]

    def meta(self, i: int, row: Mapping[str, Any]) -> dict[str, Any]:
        used = {self.cols[r] for r in DATASET_ROLES}
        extra = {k: v for k, v in row.items() if k not in used and isinstance(v, (str, int, float, bool))}
        return {**extra, "index": i, "dataset": self.spec.name}

    def prompt(self, i: int, row: Mapping[str, Any], value: Any, col: str) -> Prompt:
        system = row.get(self.cols["system"]) if self.has("system", row) else None
        if system is not None and not isinstance(system, str):
            raise self.fail(i, f"column '{self.cols['system']}' should be a string, got {type(system).__name__}")
        msgs = self.messages(i, value, col)
        meta = self.meta(i, row)
        if msgs is None:
            return self.encoder.prompt(value, meta, system=system, raw=not self.chat)
        if system and msgs[0]["role"] != "system":
            msgs = [{"role": "system", "content": system}, *msgs]
        return encode_messages(self.encoder, msgs, meta)

    def split_conversation(self, i: int, value: Any, col: str) -> tuple[list[dict[str, str]], str]:
        msgs = self.messages(i, value, col)
        if msgs is None:
            raise self.fail(i, f"column '{col}' should be a list of messages here, got a string")
        if msgs[-1]["role"] != "assistant":
            raise self.fail(i, f"column '{col}': the last message is '{msgs[-1]['role']}', expected 'assistant'")
        if len(msgs) < 2:
            raise self.fail(i, f"column '{col}': no turn before the assistant's; give a prompt column")
        return msgs[:-1], msgs[-1]["content"]

    def _prompt_for(self, i: int, row: Mapping[str, Any], conv_role: str) -> tuple[Prompt, Any]:
        """The prompt of a demonstration/pair: the ``prompt`` column, else the conversation's earlier turns."""
        conv = self.get(i, row, conv_role, need=f"each row needs '{self.cols[conv_role]}'")
        col = self.cols[conv_role]
        if self.has("prompt", row) and row.get(self.cols["prompt"]) is not None:
            msgs = self.messages(i, conv, col)
            if msgs is not None and len(msgs) > 1:  # conversational, with the prompt included (UltraFeedback)
                head, _ = self.split_conversation(i, conv, col)
                return self.prompt(i, row, head, col), conv
            return self.prompt(i, row, row[self.cols["prompt"]], self.cols["prompt"]), conv
        head, _ = self.split_conversation(i, conv, col)
        return self.prompt(i, row, head, col), conv

    def demonstration(self, i: int, row: Mapping[str, Any]) -> Sequence:
        if self.has("messages", row) and row.get(self.cols["messages"]) is not None:
            head, resp = self.split_conversation(i, row[self.cols["messages"]], self.cols["messages"])
            return Sequence(self.prompt(i, row, head, self.cols["messages"]), self.encoder.response(resp))
        if self.has("messages") and not self.has("completion") and not self.has("chosen"):
            raise self.fail(i, f"column '{self.cols['messages']}' is missing or empty (this file's demonstrations "
                               f"are conversations); give the row its messages, or prompt/completion columns")
        role = "completion" if self.has("completion", row) or not self.has("chosen", row) else "chosen"
        if role == "completion" and not self.has("prompt", row):
            raise self.fail(i, f"no '{self.cols['messages']}' column and no '{self.cols['prompt']}'/"
                               f"'{self.cols['completion']}' columns; demonstrations need one of these "
                               f"(map yours with --set data.columns.prompt=NAME)")
        prompt, value = self._prompt_for(i, row, role)
        return Sequence(prompt, self.encoder.response(self.text(i, value, self.cols[role])))

    def pair(self, i: int, row: Mapping[str, Any]) -> Pair:
        prompt, chosen = self._prompt_for(i, row, "chosen")
        rejected = self.get(i, row, "rejected", need="preference pairs need chosen and rejected")
        good, bad = self.text(i, chosen, self.cols["chosen"]), self.text(i, rejected, self.cols["rejected"])
        if good == bad:  # no preference to learn: every pairwise loss is flat there; almost always a data bug
            raise self.fail(i, f"'{self.cols['chosen']}' and '{self.cols['rejected']}' are the same response; a "
                               f"preference pair needs two different ones (drop or fix the row)")
        return Pair(prompt, self.encoder.response(good), self.encoder.response(bad))

    def label(self, i: int, row: Mapping[str, Any]) -> bool:
        value = self.get(i, row, "label", need="unpaired feedback needs a label (true = desirable)")
        col = self.cols["label"]
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
            return value.strip().lower() in ("true", "1")
        raise self.fail(i, f"column '{col}' should be true or false (desirable or not), got {value!r:.40}")

    def feedback(self, i: int, row: Mapping[str, Any]) -> list[Feedback]:
        """One labelled completion (prompt / completion / label), or a pair unpaired into two."""
        if self.has("label", row) and row.get(self.cols["label"]) is not None:
            desirable = self.label(i, row)
            if not self.has("completion", row):
                raise self.fail(i, f"a '{self.cols['label']}' column needs a '{self.cols['completion']}' column "
                                   f"(map yours with --set data.columns.completion=NAME)")
            prompt, value = self._prompt_for(i, row, "completion")
            return [Feedback(prompt, self.encoder.response(self.text(i, value, self.cols["completion"])), desirable)]
        if self.has("chosen", row) and self.has("rejected", row):
            p = self.pair(i, row)
            return [Feedback(p.prompt, p.chosen, True), Feedback(p.prompt, p.rejected, False)]
        raise self.fail(i, f"unpaired feedback needs '{self.cols['prompt']}'/'{self.cols['completion']}'/"
                           f"'{self.cols['label']}' columns (or chosen/rejected pairs); map yours with "
                           f"--set data.columns.label=NAME")

    def prompt_only(self, i: int, row: Mapping[str, Any]) -> Prompt:
        if self.has("prompt", row) and row.get(self.cols["prompt"]) is not None:
            return self.prompt(i, row, row[self.cols["prompt"]], self.cols["prompt"])
        for role in ("messages", "chosen", "completion"):
            if self.has(role, row) and row.get(self.cols[role]) is not None:
                msgs = self.messages(i, row[self.cols[role]], self.cols[role])
                if msgs is not None:
                    head = msgs[:-1] if msgs[-1]["role"] == "assistant" else msgs
                    if head:
                        return self.prompt(i, row, head, self.cols[role])
        self.get(i, row, "prompt", need="prompts need a prompt column (or message lists)")
        raise AssertionError  # pragma: no cover

    def convert(self, kind: str) -> list[Any]:
        fn: Callable[[int, Mapping[str, Any]], Any] = {
            DEMONSTRATIONS: self.demonstration, PREFERENCES: self.pair, PROMPTS: self.prompt_only,
            FEEDBACK: self.feedback}[kind]
        out = []
        context = getattr(self.encoder, "context", None)
        for i, row in enumerate(self.ds):
            if self.spec.transform is not None:
                row = self.spec.transform(dict(row))
            if context and (chars := _chars(row)) > 64 * context:  # far too long: not worth tokenizing
                raise self.fail(i, f"{chars:,} characters, far over the model's context of {context:,} tokens; "
                                   f"drop or shorten the row")
            items = fn(i, row) if kind == FEEDBACK else [fn(i, row)]
            for item in items:
                if context and (n := _tokens(item)) > context:
                    raise self.fail(i, f"{n:,} tokens, over the model's context of {context:,}; drop or shorten "
                                       f"the row")
            out.extend(items)
        if not out:
            raise HarnessError(f"{self.source}: no rows; the dataset is empty")
        return out


def _chars(row: Mapping[str, Any]) -> int:
    """The characters of a row's text (strings, and message contents)."""
    n = 0
    for v in row.values():
        if isinstance(v, str):
            n += len(v)
        elif isinstance(v, list):
            n += sum(len(m.get("content") or "") if isinstance(m, Mapping) else len(str(m)) for m in v)
    return n


def _tokens(item: Any) -> int:
    """The longest sequence a training item becomes (prompt + response; a pair's longer response)."""
    if isinstance(item, Sequence):
        return len(item.prompt.ids) + len(item.response)
    if isinstance(item, Pair):
        return len(item.prompt.ids) + max(len(item.chosen), len(item.rejected))
    if isinstance(item, Feedback):
        return len(item.prompt.ids) + len(item.completion)
    return len(item.ids) if isinstance(item, Prompt) else 0


def encode_messages(encoder: PromptEncoder, msgs: list[dict[str, str]], meta: Mapping[str, Any]) -> Prompt:
    """A prompt from chat messages, rendered by the model's chat template with the generation prompt.

    ``text`` is the last user turn (what rewards and judges read); ``meta["messages"]`` keeps the whole."""
    tok = encoder.tokenizer
    last_user = next((m["content"] for m in reversed(msgs) if m["role"] == "user"), msgs[-1]["content"])
    if tok is None:  # validation only (_NullEncoder)
        return Prompt(ids=(), text=last_user, meta=meta)
    meta = {**meta, "messages": msgs}
    if encoder.chat:
        ids = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=False)
        if isinstance(ids, Mapping):
            ids = ids["input_ids"]
        return Prompt(ids=tuple(int(i) for i in ids), text=last_user, meta=meta)
    text = "".join(f"{m['role'].capitalize()}: {m['content']}\n\n" for m in msgs) + "Assistant:"
    return Prompt(ids=encoder.prompt(text, raw=True).ids, text=last_user, meta=meta)


class _NullEncoder:
    """Checks rows without tokenizing them: what :func:`validate` converts with."""

    tokenizer = None
    chat = True

    def prompt(self, text: str, meta: Mapping[str, Any] | None = None, *, system: str | None = None,
               raw: bool = False) -> Prompt:
        return Prompt(ids=(), text=text, meta=dict(meta or {}))

    def response(self, text: str, *, eos: bool = True) -> tuple[int, ...]:
        return ()


_VALIDATED: set[str] = set()


def validate(spec: DatasetSpec, params: DatasetParams, kinds: frozenset[str], version: str) -> None:
    """Convert every row of a LOCAL dataset once, without a tokenizer, so that a bad row is an error before
    any cell starts (hub datasets are checked when a cell loads them)."""
    key = repr((spec.name, params, sorted(kinds), version))
    if key in _VALIDATED:
        return
    for kind in sorted(set(kinds) & ALL_KINDS):
        ds = _load(spec, params, kind)
        _Rows(spec, params, ds, _NullEncoder(), _split(spec, params, kind)).convert(kind)  # type: ignore[arg-type]
    _VALIDATED.add(key)


def load_kind(spec: DatasetSpec, params: DatasetParams, kind: str, encoder: PromptEncoder) -> list[Any]:
    """The dataset's rows of one kind (demonstrations -> Sequence, preferences -> Pair, prompts -> Prompt,
    feedback -> Feedback)."""
    ds = _load(spec, params, kind)
    return _Rows(spec, params, ds, encoder, _split(spec, params, kind)).convert(kind)


# -- rewards for prompt-only data ---------------------------------------------------------------------------------


class SequenceClassifierReward:
    """A reward model loaded with transformers' ``AutoModelForSequenceClassification`` (hub id or path).

    Scores the prompt's conversation (``meta["messages"]``, else its text as a user turn) plus the completion
    as the assistant's turn, through the reward model's own chat template when it has one, else as
    ``prompt + completion``. One label: its logit; several: the log-probability of the last label."""

    def __init__(self, name: str, device: str | None = None) -> None:
        self.name, self.device = name, device
        self._model: Any = None

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.name)
            self._model = AutoModelForSequenceClassification.from_pretrained(self.name).to(device).eval()
        except Exception as exc:  # noqa: BLE001
            raise HarnessError(f"reward model '{self.name}': cannot load it ({type(exc).__name__}); give a local "
                               f"directory saved with save_pretrained, or a reachable hub id") from None
        self._device = device

    def text(self, prompt: Prompt, completion: Any) -> str:
        msgs = list(prompt.meta.get("messages") or [{"role": "user", "content": prompt.text}])
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                [*msgs, {"role": "assistant", "content": completion.text}], tokenize=False)
        return prompt.text + completion.text

    def __call__(self, prompt: Prompt, completion: Any) -> float:
        import torch

        if self._model is None:
            self._load()
        enc = self.tokenizer(self.text(prompt, completion), return_tensors="pt", truncation=True)
        with torch.no_grad():
            logits = self._model(**{k: v.to(self._device) for k, v in enc.items()}).logits[0].float()
        return float(logits[0]) if logits.numel() == 1 else float(torch.log_softmax(logits, -1)[-1])

    def __getstate__(self) -> dict[str, Any]:
        return {"name": self.name, "device": self.device, "_model": None}


def make_reward(choice: str, reg: Registry, where: str = "") -> Callable[..., float]:
    """The reward a suite's ``reward = ...`` names: ``rm:<hub id or path>``, ``irl:<folder>`` (an IRL reward
    model an ``irl-rm`` cell saved, see :mod:`harness.training.irl_reward`) or ``benchmark:<name>``."""
    pre = f"{where}: " if where else ""
    kind, sep, name = choice.partition(":")
    if sep and kind == "rm" and name:
        return SequenceClassifierReward(name)
    if sep and kind == "irl" and name:
        from harness.training.irl_reward import IRLReward, read_manifest

        return IRLReward(name, read_manifest(name, where=f"{pre}reward"))
    if sep and kind == "benchmark" and name:
        bench = reg.benchmark(name, where=f"{pre}reward")
        if bench.reward is None:
            raise HarnessError(f"{pre}reward: benchmark '{name}' has no reward; pick one that provides 'reward'")
        return bench.reward
    raise HarnessError(f"{pre}reward = {choice!r}: expected rm:<hub id or local path> (a sequence-classification "
                       f"reward model), irl:<folder> (the reward model an irl-rm cell saved in <cell folder>/"
                       f"reward_model) or benchmark:<name> (its verifiable reward)")


# -- a dataset as a training source of a cell ----------------------------------------------------------------------


def _no_eval(ctx: EvalContext) -> EvalResult:
    raise HarnessError("a dataset has no evaluation of its own; evaluate on benchmarks (eval = [...])")


def training_source(name: str, overrides: Mapping[str, Any], reg: Registry, *, where: str = "",
                    check_files: bool = True) -> tuple[BenchmarkSpec, Any]:
    """The training source of a cell that trains on ``name`` (a dataset, or a benchmark's training data):
    a :class:`BenchmarkSpec` whose ``data(kind, ctx)`` loads the rows, and its resolved params."""
    pre = f"{where}: " if where else ""
    if name in reg.specs["benchmark"] and name not in reg.specs["dataset"]:
        bench = reg.benchmark(name)
        if not set(bench.provides) - {"reward"}:
            raise HarnessError(f"{pre}benchmark '{name}' provides no training data; train on a dataset instead")
        return bench, apply_overrides(bench.params, overrides, where=f"{pre}benchmark {name}", from_string=True)
    spec = lookup(name, reg, where)
    params = dataset_params(overrides, where=f"{pre}dataset {name}")
    if params.reward:
        reward = make_reward(params.reward, reg, where)
    version = spec.version
    path = params.path or spec.path
    if path and check_files:
        if not Path(path).exists():
            raise HarnessError(f"{pre}dataset '{name}': {path}: no such file or folder; --set data.path=FILE")
        version = f"{version}+{_file_hash(Path(path))}"
    if params.reward and (fingerprint := getattr(reward, "fingerprint", None)) is not None:
        version = f"{version}+rm{fingerprint()}"  # a saved reward model trained again: new cells
    kinds = provides(spec, params) if check_files else frozenset(spec.provides | ({"reward"} if params.reward else set()))
    if path and check_files:
        validate(spec, params, kinds, version)

    def data(kind: str, ctx: DataContext) -> list[Any]:
        check = getattr(reward, "check_tokenizer", None) if params.reward else None
        if check is not None:  # an IRL reward model scores token ids: the policy must share its tokenizer
            check(getattr(ctx.encoder, "tokenizer", None))
        return load_kind(spec, ctx.params, kind, ctx.encoder)

    bench = BenchmarkSpec(name=name, description=spec.description, paper=spec.paper, evaluate=_no_eval,
                          params=DatasetParams, version=version, provides=kinds, data=data,
                          reward=reward if params.reward else None)
    return bench, params


def describe(spec: DatasetSpec, plugin: str) -> dict[str, Any]:
    """What ``harness datasets --json`` shows of one dataset."""
    return {
        "name": spec.name, "description": spec.description, "paper": spec.paper, "plugin": plugin,
        "provides": sorted(spec.provides), "hub": spec.hub or None, "config": spec.config, "data_dir": spec.data_dir,
        "split": spec.split, "splits": dict(spec.splits), "path": spec.path or None,
        "columns": dict(spec.columns), "chat": spec.chat, "version": spec.version, "limit": spec.limit,
        "offline_hint": spec.offline_hint,
        "params": [f.name for f in dataclasses.fields(DatasetParams)],
    }

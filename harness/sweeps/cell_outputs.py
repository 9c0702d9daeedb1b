"""What a finished cell leaves in its folder besides ``record.json``: the trained model (``train.save_model``),
and no checkpoint unless ``train.keep_checkpoint`` (see :func:`harness.sweeps.run.run_cell`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def finished_record(out_dir: Path, cell_id: str) -> dict[str, Any] | None:
    """The record of this cell if its folder holds a finished run of it (and no checkpoint to go on from)."""
    try:
        record = json.loads((out_dir / "record.json").read_text())
    except (OSError, ValueError):
        return None
    if record.get("status") != "done" or record.get("cell_id") != cell_id:
        return None
    return None if (out_dir / "checkpoint" / "checkpoint.pt").exists() else record


def save_model(model: Any, tokenizer: Any, out: Path, how: str) -> Path:
    """``save_pretrained`` of the trained model into ``out``: ``merged`` (LoRA merged into the weights, a plain
    transformers checkpoint) or ``adapters`` (a peft adapter folder). Loadable with ``--model <out>``."""
    out.mkdir(parents=True, exist_ok=True)
    is_peft = hasattr(model, "peft_config")
    if how == "merged" and is_peft:
        model = model.merge_and_unload()  # the run is over: the adapters are no longer needed separately
    model.save_pretrained(out)
    if tokenizer is not None and hasattr(tokenizer, "save_pretrained"):
        tokenizer.save_pretrained(out)
    return out


def finish_outputs(cell: Any, trainer: Any, tokenizer: Any, out_dir: Path, record: dict[str, Any],
                   log: Callable[[str], None]) -> None:
    """Save the model if asked, and note it in the record."""
    how = cell.train.save_model
    if how == "none":
        return
    model = trainer.accelerator.unwrap_model(trainer.model)
    path = save_model(model, tokenizer, out_dir / "model", how)
    record["model_dir"] = str(path)
    log(f"saved the trained model ({how}) to {path}")

"""What a finished cell leaves in its folder besides ``record.json``: the trained model (``train.save_model``),
and no checkpoint unless ``train.keep_checkpoint`` (see :func:`harness.cell.run.run_cell`)."""

from __future__ import annotations

import dataclasses
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
    """Save the model and a learned IRL reward model if asked, and note them in the record."""
    how = cell.train.save_model
    if how != "none":
        model = trainer.accelerator.unwrap_model(trainer.model)
        path = save_model(model, tokenizer, out_dir / "model", how)
        record["model_dir"] = str(path)
        log(f"saved the trained model ({how}) to {path}")
    if getattr(cell.train, "save_reward_model", False):
        save_reward_model(cell, trainer, tokenizer, out_dir, record, log)


def save_reward_model(cell: Any, trainer: Any, tokenizer: Any, out_dir: Path, record: dict[str, Any],
                      log: Callable[[str], None]) -> Path | None:
    """``irl-rm``'s fitted discriminator into ``<out_dir>/reward_model`` (:mod:`harness.training.irl_reward`), noted in the
    record as ``reward_model_dir``; nothing for cells that hold no IRL discriminator."""
    from harness.training.divergence import Discriminator
    from harness.training.irl_reward import FOLDER, save_irl_reward_model

    rm = trainer.state.get("reward")
    if "irl/fit" not in trainer.state or not isinstance(rm, Discriminator):
        return None  # not irl-rm, or its closed form (two whole models, no discriminator to keep)
    cfg = cell.config
    info = {"cell_id": cell.cell_id, "method": cell.method.name, "train_data": cfg.benchmark, "seed": cfg.seed,
            "method_params": dataclasses.asdict(cell.method_params), "fit": trainer.state["irl/fit"]}
    path = save_irl_reward_model(rm, out_dir / FOLDER, tokenizer=tokenizer, base_model=cfg.model, info=info)
    record["reward_model_dir"] = str(path)
    log(f'saved the IRL reward model to {path}; other cells can train on it with reward = "irl:{path}"')
    return path

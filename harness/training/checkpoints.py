"""A trainer's checkpoint: one file (``checkpoint.pt``) replaced atomically at each round's end, and inside
a round every ``train.checkpoint_every`` steps (then with the round's rows and reference log-probs, so a
killed run resumes at that step with the same numbers). Holds the policy, the method's extra modules,
the reference (unless it is the LoRA base), optimizer, scheduler, the method's state, the step history
and the torch RNG."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from harness.training.trainer import Trainer


def save(trainer: Trainer, finished_round: int, mid_round: dict[str, Any] | None = None) -> None:
    """Write ``trainer``'s checkpoint after ``finished_round`` (``mid_round``: a round in progress)."""
    if trainer.checkpoint_dir is None:
        return
    trainer.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    blob = {
        "round": finished_round,
        "mid_round": mid_round,
        "global_step": trainer.global_step,
        "model": trainer.accelerator.unwrap_model(trainer.model).state_dict(),
        "modules": trainer.modules.state_dict() if trainer.modules is not None else None,
        "reference": trainer.reference.model.state_dict()
        if trainer.reference is not None and not trainer.reference.use_adapters
        else None,
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
        "state": trainer.state,
        "history": [(h.round, h.step, h.metrics) for h in trainer.history],
        "torch_rng": torch.random.get_rng_state(),
    }
    tmp = trainer.checkpoint_dir / "checkpoint.pt.tmp"
    try:
        torch.save(blob, tmp)
        tmp.replace(trainer.checkpoint_dir / "checkpoint.pt")  # atomic: a crash never leaves half a checkpoint
    except BaseException:  # Ctrl-C or a full disk mid-write: no half-written file left beside the checkpoint
        tmp.unlink(missing_ok=True)
        raise


def resume(trainer: Trainer) -> bool:
    """Load ``trainer``'s last checkpoint if there is one; training then continues after it."""
    from harness.training.trainer import StepRecord

    path = trainer.checkpoint_dir / "checkpoint.pt" if trainer.checkpoint_dir else None
    if path is not None:  # a write a kill -9 cut short: never read, only in the way
        path.with_name("checkpoint.pt.tmp").unlink(missing_ok=True)
    if path is None or not path.exists():
        return False
    blob = torch.load(path, weights_only=False)
    trainer.accelerator.unwrap_model(trainer.model).load_state_dict(blob["model"])
    if trainer.modules is not None and blob["modules"] is not None:
        trainer.modules.load_state_dict(blob["modules"])
    if trainer.reference is not None and blob["reference"] is not None:
        trainer.reference.model.load_state_dict(blob["reference"])
        if trainer.method.reference == "initial":  # the same initial weights, written again
            trainer._versions["reference"] = trainer._weights("reference")
    trainer.optimizer.load_state_dict(blob["optimizer"])
    trainer.scheduler.load_state_dict(blob["scheduler"])
    trainer.state = blob["state"]
    trainer.history = [StepRecord(r, s, m) for r, s, m in blob["history"]]
    torch.random.set_rng_state(blob["torch_rng"])
    trainer.start_round = blob["round"] + 1
    trainer.global_step = blob["global_step"]
    trainer.resume_mid = blob.get("mid_round")
    if trainer.resume_mid is not None:  # a step checkpoint: continue inside this round
        trainer.start_round = trainer.resume_mid["round"]
    return True

"""A trainer's checkpoint: one file (``checkpoint.pt``) replaced atomically at each round's end, and inside
a round every ``train.checkpoint_every`` steps (then with the round's rows and reference log-probs, so a
killed run resumes at that step with the same numbers). Holds the policy, the method's extra modules,
the reference (unless it is the LoRA base), optimizer, scheduler, the method's state, the step history
and the torch RNG.

With several processes (:mod:`harness.training.distributed`) rank 0 alone writes the file (DDP: every rank holds
the same weights); under FSDP the model and optimizer are saved sharded with ``torch.distributed.checkpoint``
into ``dcp-<step>/`` by every rank, and the file names that folder and the number of processes, which a resume
must match."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING, Any

import torch

from harness.core.errors import HarnessError
from harness.training import distributed

if TYPE_CHECKING:
    from harness.training.trainer import Trainer


def save(trainer: Trainer, finished_round: int, mid_round: dict[str, Any] | None = None) -> None:
    """Write ``trainer``'s checkpoint after ``finished_round`` (``mid_round``: a round in progress)."""
    if trainer.checkpoint_dir is None:
        return
    world = trainer.world
    if world.main:
        trainer.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    sharded = None
    if trainer.sharded:  # every rank writes its shards, then rank 0 the file that names them
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict

        sharded = f"dcp-{trainer.global_step}-{finished_round}"
        model_state, optim_state = get_state_dict(distributed.unwrap(trainer.model), trainer.optimizer)
        dcp.save({"model": model_state, "optimizer": optim_state}, checkpoint_id=trainer.checkpoint_dir / sharded)
    if not world.main:
        distributed.barrier(world)  # rank 0 has replaced the file
        return
    blob = {
        "round": finished_round,
        "mid_round": mid_round,
        "global_step": trainer.global_step,
        "processes": world.size,
        "sharded": sharded,
        "model": None if sharded else trainer.accelerator.unwrap_model(trainer.model).state_dict(),
        "modules": trainer.modules.state_dict() if trainer.modules is not None else None,
        "reference": trainer.reference.model.state_dict()
        if trainer.reference is not None and not trainer.reference.use_adapters
        else None,
        "optimizer": None if sharded else trainer.optimizer.state_dict(),
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
    for old in trainer.checkpoint_dir.glob("dcp-*"):  # shards the file no longer names
        if old.name != sharded:
            shutil.rmtree(old, ignore_errors=True)
    distributed.barrier(world)


def resume(trainer: Trainer) -> bool:
    """Load ``trainer``'s last checkpoint if there is one; training then continues after it."""
    from harness.training.trainer import StepRecord

    path = trainer.checkpoint_dir / "checkpoint.pt" if trainer.checkpoint_dir else None
    if path is not None:  # a write a kill -9 cut short: never read, only in the way
        path.with_name("checkpoint.pt.tmp").unlink(missing_ok=True)
    if path is None or not path.exists():
        return False
    blob = torch.load(path, weights_only=False)
    if blob.get("sharded"):
        if blob.get("processes") != trainer.world.size:
            raise HarnessError(f"{path}: an FSDP checkpoint of {blob.get('processes')} processes; resume it with "
                               f"train.processes={blob.get('processes')} (or --no-resume)")
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

        inner = distributed.unwrap(trainer.model)
        model_state, optim_state = get_state_dict(inner, trainer.optimizer)
        state = {"model": model_state, "optimizer": optim_state}
        dcp.load(state, checkpoint_id=path.parent / blob["sharded"])
        set_state_dict(inner, trainer.optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
        trainer.sync_policy()
    else:
        trainer.accelerator.unwrap_model(trainer.model).load_state_dict(blob["model"])
    if trainer.modules is not None and blob["modules"] is not None:
        trainer.modules.load_state_dict(blob["modules"])
    if trainer.reference is not None and blob["reference"] is not None:
        trainer.reference.model.load_state_dict(blob["reference"])
        if trainer.method.reference == "initial":  # the same initial weights, written again
            trainer._versions["reference"] = trainer._weights("reference")
    if blob["optimizer"] is not None:
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

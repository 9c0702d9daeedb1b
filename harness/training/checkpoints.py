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
from pathlib import Path
from typing import Any, Protocol

import torch

from harness.core.errors import HarnessError
from harness.training import distributed


class Checkpointable(Protocol):
    """What a checkpoint needs of its owner (:class:`harness.training.trainer.Trainer` is one): where to write,
    the process group, whether the model is FSDP-sharded, and its state as ``state_dict()`` /
    ``load_state_dict()`` (see :meth:`harness.training.trainer.Trainer.state_dict` for the keys)."""

    checkpoint_dir: Path | None
    world: distributed.World
    sharded: bool

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def save(owner: Checkpointable, finished_round: int, mid_round: dict[str, Any] | None = None) -> None:
    """Write ``owner``'s checkpoint after ``finished_round`` (``mid_round``: a round in progress)."""
    directory, world = owner.checkpoint_dir, owner.world
    if directory is None:
        return
    if world.main:
        directory.mkdir(parents=True, exist_ok=True)
    state = owner.state_dict()
    sharded = None
    if owner.sharded:  # every rank writes its shards, then rank 0 the file that names them
        import torch.distributed.checkpoint as dcp

        sharded = f"dcp-{state['global_step']}-{finished_round}"
        dcp.save({"model": state["model"], "optimizer": state["optimizer"]}, checkpoint_id=directory / sharded)
    if not world.main:
        distributed.barrier(world)  # rank 0 has replaced the file
        return
    blob = {"round": finished_round, "mid_round": mid_round, "processes": world.size, **state, "sharded": sharded}
    if sharded:  # in the shards, not in the file
        blob["model"] = blob["optimizer"] = None
    tmp = directory / "checkpoint.pt.tmp"
    try:
        torch.save(blob, tmp)
        tmp.replace(directory / "checkpoint.pt")  # atomic: a crash never leaves half a checkpoint
    except BaseException:  # Ctrl-C or a full disk mid-write: no half-written file left beside the checkpoint
        tmp.unlink(missing_ok=True)
        raise
    for old in directory.glob("dcp-*"):  # shards the file no longer names
        if old.name != sharded:
            shutil.rmtree(old, ignore_errors=True)
    distributed.barrier(world)


def resume(owner: Checkpointable) -> bool:
    """Load ``owner``'s last checkpoint if there is one; training then continues after it."""
    path = owner.checkpoint_dir / "checkpoint.pt" if owner.checkpoint_dir else None
    if path is not None:  # a write a kill -9 cut short: never read, only in the way
        path.with_name("checkpoint.pt.tmp").unlink(missing_ok=True)
    if path is None or not path.exists():
        return False
    blob = torch.load(path, weights_only=False)
    if blob.get("sharded"):
        if blob.get("processes") != owner.world.size:
            raise HarnessError(f"{path}: an FSDP checkpoint of {blob.get('processes')} processes; resume it with "
                               f"train.processes={blob.get('processes')} (or --no-resume)")
        import torch.distributed.checkpoint as dcp

        template = owner.state_dict()  # the sharded model and optimizer state, loaded into in place
        parts = {"model": template["model"], "optimizer": template["optimizer"]}
        dcp.load(parts, checkpoint_id=path.parent / blob["sharded"])
        blob.update(parts)
    owner.load_state_dict(blob)
    return True

"""One cell across N processes with ``torch.distributed``: who this process is, how the model is wrapped,
how work is sharded and gathered.

- :func:`world`: this process's rank, the number of processes and its local rank (one process: ``0, 1, 0``);
- :func:`launched_size` / :func:`init_from_env`: a process started by ``torchrun`` or ``accelerate launch``
  (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` in the environment) joins its process group;
- :func:`spawn`: ``train.processes = N`` without a launcher: N processes with ``torch.multiprocessing``
  on 127.0.0.1, each calling the same function (see :func:`harness.cell.run.run_cell`);
- :func:`backend_for` (NCCL on CUDA, gloo on CPUs) and :func:`device_for` (rank -> ``cuda:<local rank>``);
- :func:`wrap`: DDP (``DistributedDataParallel``) or FSDP2 (``torch.distributed.fsdp.fully_shard`` on each
  decoder layer and the root; mixed precision and CPU offload as options);
- :func:`shard` / :func:`gather` / :func:`map_sharded`: contiguous blocks of items by rank, gathered back
  in item order (``all_gather_object``); :class:`ShardedEngine` generates greedy completions that way.

The trainer keeps ``train.batch_size`` the GLOBAL micro-batch: each rank takes its block of the same seeded
batch (``batch_size`` must divide by N) and DDP / FSDP average the gradients, so the numbers do not depend on N.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from harness.core.errors import HarnessError

STRATEGIES = ("ddp", "fsdp")


@dataclass(frozen=True)
class World:
    """This process's place: ``rank`` of ``size`` processes, ``local_rank`` on its machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes the store, the run folder, progress, tracking and stdout."""
        return self.rank == 0


def world() -> World:
    """The current process group's view of this process (one process when none is initialised)."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    return World()


def launched_size() -> int:
    """The number of processes a launcher (torchrun, accelerate launch) started this one among; 1: none."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1
    return size if size > 1 and "RANK" in os.environ else 1


def backend_for(device: str) -> str:
    """``nccl`` for CUDA devices, ``gloo`` for CPUs."""
    return "nccl" if device.startswith("cuda") else "gloo"


def device_for(device: str, local_rank: int) -> str:
    """The device of the process with ``local_rank``: its own GPU or the CPU. The GPU is ``cuda:<local rank>``,
    or the local rank-th of ``$HARNESS_DEVICES`` (the list a sweep's local executor gave the cell)."""
    if device in ("cuda", "auto") and (device == "cuda" or torch.cuda.is_available()):
        given = [int(d) for d in os.environ.get("HARNESS_DEVICES", "").split(",") if d.strip()]
        return f"cuda:{given[local_rank] if local_rank < len(given) else local_rank}"
    if device == "auto":
        return "cpu"
    return device


def init_from_env(device: str) -> World:
    """Join the process group a launcher set up in the environment (no-op when already joined or alone)."""
    if launched_size() > 1 and not dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if backend_for(device_for(device, local)) == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend_for(device_for(device, local)), timeout=timedelta(minutes=30))
    return world()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawned(local_rank: int, size: int, port: int, device: str, errors: str, fn: Callable[..., Any],
             args: tuple[Any, ...]) -> None:
    os.environ.update({"RANK": str(local_rank), "LOCAL_RANK": str(local_rank), "WORLD_SIZE": str(size),
                       "LOCAL_WORLD_SIZE": str(size), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    try:
        init_from_env(device)
        fn(*args)
    except BaseException as exc:  # when it failed, so the first failure (the cause) is the one named
        with contextlib.suppress(OSError):
            Path(errors, f"rank-{local_rank}").write_text(f"{time.monotonic()!r}\n{type(exc).__name__}: {exc}")
        raise
    finally:
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def _first_failure(errors: str) -> tuple[int, str] | None:
    """(rank, "Type: message") of the rank that failed first: the others usually fail because it left (a
    collective's connection reset), so the earliest is the cause."""
    found = []
    for f in Path(errors).glob("rank-*"):
        with contextlib.suppress(OSError, ValueError):
            when, _, what = f.read_text().partition("\n")
            found.append((float(when), int(f.name.removeprefix("rank-")), what.strip().splitlines()[0] if what.strip() else "?"))
    return min(found)[1:] if found else None


def spawn(size: int, device: str, fn: Callable[..., Any], *args: Any) -> None:
    """Run ``fn(*args)`` in ``size`` fresh processes (``torch.multiprocessing``, spawn) forming one process
    group on 127.0.0.1; returns when all finished. A failure of any rank raises naming the rank that failed
    first (the others' errors are usually its consequence)."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="harness-rank-errors-") as errors:
        try:
            mp.spawn(_spawned, args=(size, free_port(), device, errors, fn, args), nprocs=size, join=True)
        except mp.ProcessRaisedException as exc:
            time.sleep(0.2)  # the rank that failed first may still be writing its line
            first = _first_failure(errors)
            if first is not None:
                raise RuntimeError(f"rank {first[0]} of {size} failed: {first[1]}") from None
            last = [line for line in str(exc).strip().splitlines() if line.strip()]
            raise RuntimeError(f"rank {exc.error_index} of {size} failed: {last[-1].strip() if last else exc}") from None
        except mp.ProcessExitedException as exc:
            first = _first_failure(errors)
            if first is not None:
                raise RuntimeError(f"rank {first[0]} of {size} failed: {first[1]}") from None
            raise RuntimeError(f"rank {exc.error_index} of {size} died (exit code {exc.exit_code})") from None


def barrier(w: World) -> None:
    """Wait for every rank (no-op alone)."""
    if w.size > 1:
        dist.barrier()


# -- sharding --------------------------------------------------------------------------------------


def bounds(n: int, w: World) -> tuple[int, int]:
    """The block ``[start, stop)`` of ``n`` items that rank ``w.rank`` takes (contiguous, sizes differ by <= 1)."""
    base, extra = divmod(n, w.size)
    start = w.rank * base + min(w.rank, extra)
    return start, start + base + (1 if w.rank < extra else 0)


def shard(items: Sequence[Any], w: World | None = None) -> list[Any]:
    """This rank's block of ``items``."""
    w = w or world()
    start, stop = bounds(len(items), w)
    return list(items[start:stop])


def gather(local: Sequence[Any], w: World | None = None) -> list[Any]:
    """Every rank's block, concatenated in rank order (so in item order after :func:`shard`)."""
    w = w or world()
    if w.size == 1:
        return list(local)
    parts: list[Any] = [None] * w.size
    dist.all_gather_object(parts, list(local))
    return [x for part in parts for x in part]


def map_sharded(items: Sequence[Any], fn: Callable[[list[Any]], list[Any]], w: World | None = None) -> list[Any]:
    """``fn`` over this rank's block of ``items``, every rank's results gathered in item order."""
    w = w or world()
    return list(fn(list(items))) if w.size == 1 else gather(fn(shard(items, w)), w)


def logprobs_sharded(rows: Sequence[Any], score: Callable[[list[Any]], dict[str, list[Any]]],
                     w: World) -> dict[str, list[Any]]:
    """``score`` (rows -> ``{role: [one tensor per row]}``) over this rank's block of rows, every rank's
    blocks gathered in row order."""
    mine = shard(rows, w)
    parts = gather([score(mine) if mine else None], w)
    out: dict[str, list[Any]] = {}
    for part in parts:
        for role, values in (part or {}).items():
            out.setdefault(role, []).extend(values)
    return out


def mean_over_ranks(values: dict[str, float], w: World | None = None) -> dict[str, float]:
    """Each value averaged over the ranks (the global mean when every rank took as many rows)."""
    w = w or world()
    if w.size == 1 or not values:
        return values
    keys = sorted(values)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: float(v) / w.size for k, v in zip(keys, t.tolist(), strict=True)}


class ShardedEngine:
    """An engine whose greedy generations are sharded by rank and gathered in prompt order (every rank
    calls ``generate`` with the same prompts). Sampled generations (temperature > 0) run whole on every
    rank: the engine draws a batch from one seeded generator, so a shard's draws would depend on N."""

    def __init__(self, engine: Any, w: World) -> None:
        self.inner, self.world = engine, w

    def generate(self, prompts: Sequence[Any], **kwargs: Any) -> list[Any]:
        if float(kwargs.get("temperature", 0.0) or 0.0) > 0.0:
            return self.inner.generate(prompts, **kwargs)
        return map_sharded(list(prompts), lambda part: self.inner.generate(part, **kwargs) if part else [],
                           self.world)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


# -- the model -------------------------------------------------------------------------------------


class Accelerated:
    """What the trainer asks of accelerate's ``Accelerator`` (backward, clip_grad_norm_, unwrap_model), for a
    model :func:`wrap` made ready: ``unwrap_model`` gives ``whole``, the policy handle's whole model."""

    def __init__(self, whole: torch.nn.Module) -> None:
        self.whole = whole

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def clip_grad_norm_(self, params: Sequence[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
        return torch.nn.utils.clip_grad_norm_(list(params), max_norm)

    def unwrap_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return self.whole


class Forward(torch.nn.Module):
    """A wrapped model called through its root ``forward`` (where DDP and FSDP2 hook in): it hides
    ``config`` so :func:`harness.models.logprobs.sequence_logprobs` does not call the decoder directly."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner(*args, **kwargs)


def check(cfg: Any, w: World) -> None:
    """Bad settings for N processes, as one line naming the fix."""
    if cfg.strategy not in STRATEGIES:
        raise HarnessError(f"train.strategy={cfg.strategy!r}: use one of {', '.join(STRATEGIES)}")
    if w.size > 1 and cfg.batch_size % w.size:
        raise HarnessError(f"train.batch_size={cfg.batch_size} does not divide over {w.size} processes: "
                           f"make it a multiple of {w.size} (it is the global batch)")
    if w.size > 1 and cfg.strategy == "fsdp" and cfg.lora:
        raise HarnessError("train.strategy=fsdp with train.lora=true is not supported: use train.strategy=ddp")


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The model's repeated blocks (transformers' ``_no_split_modules`` classes): FSDP's sharding units."""
    names = set(getattr(model, "_no_split_modules", None) or [])
    return [m for m in model.modules() if type(m).__name__ in names]


def wrap(model: torch.nn.Module, cfg: Any, w: World) -> torch.nn.Module:
    """``model`` ready for N-process training: DDP around it, or FSDP2 sharding it in place."""
    if cfg.strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        device = next(model.parameters()).device
        ids = [device.index] if device.type == "cuda" else None
        return Forward(DistributedDataParallel(model, device_ids=ids))
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard

    kwargs: dict[str, Any] = {}
    if cfg.fsdp_mixed_precision:
        kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    if cfg.fsdp_cpu_offload:
        kwargs["offload_policy"] = CPUOffloadPolicy()
    for layer in decoder_layers(model):
        fully_shard(layer, **kwargs)
    fully_shard(model, **kwargs)
    return Forward(model)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside :func:`wrap`'s wrappers (an FSDP2 model stays sharded)."""
    inner = model.inner if isinstance(model, Forward) else model
    return inner.module if hasattr(inner, "module") and isinstance(inner, torch.nn.parallel.DistributedDataParallel) \
        else inner


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's weights on every rank (FSDP's shards all-gathered; collective)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(unwrap(model), options=StateDictOptions(full_state_dict=True))


@contextlib.contextmanager
def no_sync(model: torch.nn.Module, last: bool) -> Iterator[None]:
    """Skip DDP's gradient all-reduce on every micro-batch but the last one of an optimizer step."""
    inner = model.inner if isinstance(model, Forward) else model
    if not last and hasattr(inner, "no_sync"):
        with inner.no_sync():
            yield
    elif not last and hasattr(inner, "set_requires_gradient_sync"):  # FSDP2
        inner.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            inner.set_requires_gradient_sync(True)
    else:
        yield


def average_gradients(params: Sequence[torch.nn.Parameter], w: World) -> None:
    """All-reduce and average the gradients of parameters outside DDP/FSDP (a method's extra modules)."""
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= w.size


def local_bytes(tensors: Any) -> int:
    """Bytes this rank holds for ``tensors`` (an FSDP DTensor counts its local shard only)."""
    total = 0
    for t in tensors:
        local = t.to_local() if hasattr(t, "to_local") else t
        total += local.numel() * local.element_size()
    return total


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> Iterator[torch.Tensor]:
    for state in optimizer.state.values():
        for v in state.values():
            if isinstance(v, torch.Tensor) and v.dim() > 0:
                yield v


__all__ = ["STRATEGIES", "Accelerated", "Forward", "ShardedEngine", "World", "average_gradients", "backend_for", "barrier", "bounds", "check",
           "decoder_layers", "device_for", "free_port", "full_state_dict", "gather", "init_from_env",
           "launched_size", "local_bytes", "logprobs_sharded", "map_sharded", "mean_over_ranks", "no_sync", "optimizer_tensors", "shard",
           "spawn", "unwrap", "wrap", "world"]

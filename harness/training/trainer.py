"""The one trainer loop: rounds x steps, read top to bottom.

Each round: the method's sampler builds the round's training set; reference log-probs for that set
are computed ONCE and reused by every step (and read from the shared cache, :mod:`harness.core.cache`,
when another cell already scored the same rows with the same reference); then ``steps`` optimizer steps, each over
``batch_size x grad_accum`` rows taken in a seeded order. A checkpoint is written at each round's end
and training resumes from the last one.

One process: ``accelerate``'s ``Accelerator`` places the model on its device. Several processes
(``train.processes = N``, ``harness run --nproc N``, or a launcher such as ``torchrun`` / ``accelerate launch``;
see :mod:`harness.training.distributed` and docs/scale.md): ``train.strategy`` wraps the model in DDP or shards it
with FSDP2's ``fully_shard``; ``batch_size`` stays the global micro-batch, each rank taking its block of the same
seeded rows, and the gradients are averaged, so the numbers do not depend on N. Reference log-probs and greedy
generations are sharded by rank and gathered in row order; sampled generations run whole on every rank (one
seeded generator per batch). Under FSDP the policy handle keeps a whole copy of the weights to generate and
evaluate from, refreshed from the shards at each round's end.
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from harness.core import progress
from harness.core.cache import Cache, CellCache, weight_versions
from harness.core.context import RoundContext, TrainingData
from harness.core.contract import ObjectiveContract, call_sampler
from harness.core.data import Row
from harness.core.errors import HarnessError
from harness.core.params import param
from harness.core.registry import MethodSpec
from harness.core.seeds import derive_seed
from harness.models.lm import LM
from harness.models.logprobs import batch_logprobs
from harness.training import checkpoints, distributed
from harness.training.reference import Reference


@dataclass(frozen=True)
class TrainConfig:
    """Trainer settings shared by every method (a method's ``train_defaults`` come first)."""

    rounds: int = param(1, "rounds; each samples a fresh training set (0: evaluate only, no training)", ge=0)
    steps: int = param(50, "optimizer steps per round", ge=1)
    batch_size: int = param(8, "rows per micro-batch", ge=1)
    grad_accum: int = param(1, "micro-batches per optimizer step", ge=1)
    lr: float = param(1e-3, "peak learning rate", gt=0)
    optimizer: Literal["adamw", "adam", "rmsprop", "sgd"] = param("adamw", "optimizer")
    weight_decay: float = param(0.0, "weight decay", ge=0)
    schedule: Literal["linear", "cosine", "constant"] = param("linear", "decay after warmup, over all rounds")
    warmup_ratio: float = param(0.1, "fraction of all steps spent warming up", ge=0, le=1)
    max_grad_norm: float = param(1.0, "gradient clipping norm (0 = off)", ge=0)
    lora: bool = param(False, "train LoRA adapters (peft) instead of all weights")
    lora_r: int = param(8, "LoRA rank", ge=1)
    lora_alpha: int = param(16, "LoRA alpha")
    ref_batch_size: int = param(16, "batch size for reference log-probs", ge=1)
    gradient_checkpointing: bool = param(
        False, "recompute activations in the backward pass instead of storing them (less GPU memory, more "
        "compute; off by default, which is what a CPU wants)"
    )
    eval_every_round: bool = param(True, "evaluate after every round (else only at the end)")
    eval_every_steps: int = param(
        0, "also evaluate every N optimizer steps inside a round (0: off): its metrics are logged at that step "
        "(eval/<benchmark>/<metric>, in the step's metrics and the tracker) and kept in the record's step_evals",
        ge=0)
    eval_initial: bool = param(
        True, "evaluate the initial policy before training (round 0); false skips it when a no-training row "
        "of the sweep already gives that baseline (a cell with rounds = 0 always evaluates)"
    )
    save_model: Literal["none", "merged", "adapters"] = param(
        "none", "at the end, save_pretrained into <out>/model: 'merged' (the full model, LoRA merged in) or "
        "'adapters' (LoRA adapters only)"
    )
    save_reward_model: bool = param(
        True, "at the end, save a learned IRL reward model (irl-rm's discriminator) into <out>/reward_model, usable "
        "by other cells as reward = \"irl:<that folder>\""
    )
    checkpoint_every: int = param(
        0, "also checkpoint every N optimizer steps inside a round (0: at round ends only); a killed run resumes "
        "from the last one with the same final numbers"
    )
    keep_checkpoint: bool = param(False, "keep the (last) checkpoint after the run finished (else it is removed)")
    processes: int = param(
        1, "processes training this one cell with torch.distributed (harness run --nproc N); batch_size stays "
        "the global batch, so the numbers do not depend on N. Under torchrun / accelerate launch: the launcher's"
    )
    strategy: Literal["ddp", "fsdp"] = param(
        "ddp", "with several processes: 'ddp' (a full copy per process, gradients all-reduced) or 'fsdp' "
        "(FSDP2 fully_shard: parameters, gradients and optimizer state sharded over the processes)"
    )
    fsdp_mixed_precision: bool = param(False, "fsdp: compute in bfloat16, reduce gradients in float32")
    fsdp_cpu_offload: bool = param(False, "fsdp: keep the sharded parameters and optimizer state on the CPU")


OUTPUT_ONLY = ("save_model", "save_reward_model", "checkpoint_every", "keep_checkpoint", "processes", "strategy",
               "fsdp_cpu_offload", "eval_every_steps")
"""TrainConfig fields that change what is written or where the work runs, never the numbers (beyond the order of
float reductions across processes): not part of a cell's identity."""
IDENTITY_IF_SET = {"fsdp_mixed_precision": False}
"""TrainConfig fields that change the numbers but enter a cell's identity only when not at this default (so
cells recorded before the field existed keep their ids)."""


def make_optimizer(cfg: TrainConfig, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    # On CUDA the fused Adam kernels: no parameter-sized temporaries (the foreach path allocates some), faster.
    fused = {"fused": True} if params and all(p.is_cuda and p.is_floating_point() for p in params) else {}
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def enable_gradient_checkpointing(model: Any) -> None:
    """Turn on transformers' activation checkpointing (non-reentrant: no input grads needed under LoRA)."""
    # transformers >= 5.24 names it activation_checkpointing_enable (the old name warns).
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    elif hasattr(model, "gradient_checkpointing_enable"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        raise HarnessError("train.gradient_checkpointing: this model does not support it; set it to false")


def lr_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    """Multiplier of the peak LR at a global step: linear warmup, then the chosen decay."""
    total = max(1, cfg.rounds * cfg.steps)
    warmup = int(cfg.warmup_ratio * total)

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if cfg.schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        if cfg.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * progress))
        return max(0.0, 1.0 - progress)

    return f


@dataclass
class StepRecord:
    round: int
    step: int
    metrics: dict[str, float]


class Trainer:
    """Trains ``policy`` with ``method`` on a benchmark's data; see the module docstring."""

    def __init__(
        self,
        *,
        method: MethodSpec,
        method_params: Any,
        cfg: TrainConfig,
        policy: LM,
        data: TrainingData,
        seed: int,
        engine_factory: Callable[[Any], Any],
        checkpoint_dir: Path | None = None,
        accelerator: Any = None,
        progress: bool = True,
        modules: torch.nn.Module | None = None,
        cache: Cache | None = None,
        model_key: str | None = None,
        on_step: Callable[[int, int], None] | None = None,
        on_phase: Callable[[str, int], None] | None = None,
    ) -> None:
        """``cache`` and ``model_key`` (the identity of ``policy`` as it is now, see
        :func:`harness.core.cache.model_identity`) let cells share reference log-probs and generated samples;
        without both nothing is cached. ``on_step(round, step)`` is called after every optimizer step,
        ``on_phase(what, round)`` when a round starts building its data (``"sampling"``) and scoring it
        under the reference (``"reference log-probs"``): on a real model these take minutes."""
        from accelerate import Accelerator

        self.method, self.params, self.cfg = method, method_params, cfg
        self.policy, self.data, self.seed = policy, data, seed
        self.checkpoint_dir = checkpoint_dir
        self.progress = progress
        self.world = distributed.world()
        distributed.check(cfg, self.world)
        self.reference = (
            Reference(policy.model, policy.tokenizer, engine_factory, use_adapters=cfg.lora and method.reference == "initial")
            if method.reference != "none"
            else None
        )
        self.modules = modules
        if cfg.gradient_checkpointing:
            enable_gradient_checkpointing(policy.model)
        if self.world.size > 1:  # DDP or FSDP2 (harness.training.distributed); accelerate stays single-process
            self.accelerator = distributed.Accelerated(policy.model)
            # FSDP shards a copy: the policy handle keeps whole weights to generate from, synced each round.
            self.sharded = cfg.strategy == "fsdp"
            self.model = distributed.wrap(copy.deepcopy(policy.model) if self.sharded else policy.model, cfg,
                                          self.world)
            trainable = [p for p in self.model.parameters() if p.requires_grad]
            if modules is not None:
                trainable += list(modules.parameters())
            self.optimizer = make_optimizer(cfg, trainable)
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(cfg))
        else:
            self.sharded = False
            self.accelerator = accelerator or Accelerator(cpu=policy.device.type == "cpu")
            trainable = [p for p in policy.model.parameters() if p.requires_grad]
            if modules is not None:
                trainable += list(modules.parameters())
            self.optimizer = make_optimizer(cfg, trainable)
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(cfg))
            self.model, self.optimizer, self.scheduler = self.accelerator.prepare(
                policy.model, self.optimizer, self.scheduler
            )
        self.state: dict[str, Any] = {}
        self.history: list[StepRecord] = []
        self.start_round = 0
        self.global_step = 0
        self.resume_mid: dict[str, Any] | None = None  # set by try_resume from a step checkpoint
        self.on_step = on_step
        self.on_phase = on_phase
        self.model_key = model_key
        self.cache = CellCache(cache, self.identity) if cache is not None and model_key is not None else None
        self._versions = {"policy": self._weights("policy"), "reference": self._weights("reference")}
        self._round = 0
        self.objective = ObjectiveContract()  # calls method.objective under its contract (harness.core.contract)

    # -- identities for the cache ------------------------------------------------------------------
    def _weights(self, which: str) -> tuple[int, ...] | None:
        if which == "policy":
            return weight_versions(self.accelerator.unwrap_model(self.model).parameters())
        if self.reference is None:
            return None
        return weight_versions(p for p in self.reference.model.parameters() if not p.requires_grad)

    def identity(self, which: str) -> str | None:
        """The identity of ``"reference"`` or ``"policy"`` now, or None when unknown (see harness.core.cache):
        only the initial weights have one: the reference while reference="initial" (any round) or in round
        0, the policy before its first step; and only while their weights are untouched since."""
        if self.model_key is None:
            return None
        if which == "reference":
            if self.reference is None or (self.method.reference == "round" and self._round > 0):
                return None
        elif which != "policy" or self.global_step > 0:
            return None
        if self._weights(which) != self._versions[which]:
            return None
        return self.model_key

    # -- checkpoints (harness.training.checkpoints) ----------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint saves: ``global_step``, ``model`` (the policy's weights; FSDP: the sharded model and
        optimizer state of :func:`torch.distributed.checkpoint.state_dict.get_state_dict`), ``modules`` (the
        method's extra modules), ``reference`` (unless it is the LoRA base), ``optimizer``, ``scheduler``,
        ``state`` (the method's), ``history`` and ``torch_rng``."""
        if self.sharded:
            from torch.distributed.checkpoint.state_dict import get_state_dict

            model_state, optim_state = get_state_dict(distributed.unwrap(self.model), self.optimizer)
        else:
            model_state = self.accelerator.unwrap_model(self.model).state_dict()
            optim_state = self.optimizer.state_dict()
        return {
            "global_step": self.global_step,
            "model": model_state,
            "modules": self.modules.state_dict() if self.modules is not None else None,
            "reference": self.reference.model.state_dict()
            if self.reference is not None and not self.reference.use_adapters
            else None,
            "optimizer": optim_state,
            "scheduler": self.scheduler.state_dict(),
            "state": self.state,
            "history": [(h.round, h.step, h.metrics) for h in self.history],
            "torch_rng": torch.random.get_rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` gave, plus the checkpoint's ``round`` and ``mid_round`` (where it was
        written): training then continues after that round, or inside it at ``mid_round["step"]``."""
        if self.sharded:
            from torch.distributed.checkpoint.state_dict import set_state_dict

            set_state_dict(distributed.unwrap(self.model), self.optimizer, model_state_dict=state["model"],
                           optim_state_dict=state["optimizer"])
            self.sync_policy()
        else:
            self.accelerator.unwrap_model(self.model).load_state_dict(state["model"])
        if self.modules is not None and state["modules"] is not None:
            self.modules.load_state_dict(state["modules"])
        if self.reference is not None and state["reference"] is not None:
            self.reference.model.load_state_dict(state["reference"])
            if self.method.reference == "initial":  # the same initial weights, written again
                self._versions["reference"] = self._weights("reference")
        if not self.sharded and state["optimizer"] is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.state = state["state"]
        self.history = [StepRecord(r, s, m) for r, s, m in state["history"]]
        torch.random.set_rng_state(state["torch_rng"])
        self.start_round = state["round"] + 1
        self.global_step = state["global_step"]
        self.resume_mid = state.get("mid_round")
        if self.resume_mid is not None:  # a step checkpoint: continue inside this round
            self.start_round = self.resume_mid["round"]

    def save_checkpoint(self, finished_round: int, mid_round: dict[str, Any] | None = None) -> None:
        """Write the checkpoint (replacing the last one). ``mid_round``: ``{"round", "step", "rows", "ref"}``
        of a round in progress (a step checkpoint: the round's data is saved with it)."""
        checkpoints.save(self, finished_round, mid_round)

    def try_resume(self) -> bool:
        """Load the last round's checkpoint if there is one; training then continues after it."""
        return checkpoints.resume(self)

    # -- the loop ----------------------------------------------------------------------------------
    def round_context(self, rnd: int) -> RoundContext:
        return RoundContext(
            round=rnd,
            rounds=self.cfg.rounds,
            seed=self.seed,
            params=self.params,
            data=self.data,
            policy=self.policy,
            reference=self.reference.lm if self.reference is not None else None,
            rng=random.Random(f"{self.seed}-{rnd}"),
            state=self.state,
            train=self.cfg,
            cache=self.cache,
        )

    def train_round(self, rnd: int) -> list[StepRecord]:
        cfg, method, hooks = self.cfg, self.method, self.method.hooks
        self._round = rnd
        ctx = self.round_context(rnd)
        mid, self.resume_mid = (self.resume_mid if self.resume_mid and self.resume_mid["round"] == rnd else None), None
        if mid is not None:
            return self._steps(rnd, ctx, mid["rows"], mid["ref"], first=mid["step"])
        if self.reference is not None and method.reference == "round" and rnd > 0:
            self.reference.reset_to(self.accelerator.unwrap_model(self.model))
        if hooks.on_round_start:
            hooks.on_round_start(ctx)

        if self.on_phase is not None:
            self.on_phase("sampling", rnd)
        with self._phase(f"round {rnd + 1}/{self.cfg.rounds}: sampling"):
            rows = call_sampler(method, ctx)
        if not rows:
            raise HarnessError(f"method '{method.name}': its sampler produced no training rows in round {rnd}")
        # Reference log-probs: once per round for the round's data, reused by every step and epoch.
        ref = None
        if self.reference is not None:
            reference = self.reference
            if self.on_phase is not None:
                self.on_phase("reference log-probs", rnd)

            def score() -> dict[str, list[torch.Tensor]]:
                if self.world.size == 1:
                    return reference.logprobs(rows, self.policy.pad_id, cfg.ref_batch_size)
                # Each rank scores its block of rows; the blocks are gathered in row order.
                return distributed.logprobs_sharded(
                    rows, lambda part: reference.logprobs(part, self.policy.pad_id, cfg.ref_batch_size), self.world)

            with self._phase(f"round {rnd + 1}/{cfg.rounds}: reference log-probs of {len(rows)} rows"):
                ref = (self.cache.reference_logprobs(rows, batch_size=cfg.ref_batch_size, compute=score)
                       if self.cache is not None else score())

        return self._steps(rnd, ctx, rows, ref)

    def _steps(self, rnd: int, ctx: RoundContext, rows: list[Row], ref: dict[str, list[torch.Tensor]] | None,
               first: int = 0) -> list[StepRecord]:
        """The round's optimizer steps from ``first`` (a step checkpoint's) on, then the round's end."""
        cfg, hooks = self.cfg, self.method.hooks
        order = self._row_order(rnd, len(rows))
        self.model.train()
        records = []
        bar = progress.bar(cfg.steps, desc=f"train round {rnd + 1}/{cfg.rounds}", unit="step",
                           disable=not self.progress, initial=first)
        for step in range(first, cfg.steps):
            sums = self._optimizer_step(rnd, step, rows, ref, order)
            self.global_step += 1
            rec = StepRecord(rnd, step, sums)
            records.append(rec)
            self.history.append(rec)
            bar.set_postfix({k: f"{v:.4g}" for k, v in sums.items() if k not in ("lr", "step_s")}, refresh=False)
            if hooks.on_step_end:
                hooks.on_step_end(ctx, step, sums)
            if self.on_step is not None:
                self.on_step(rnd, step + 1)
            bar.update(1)
            if cfg.checkpoint_every > 0 and (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
                self.save_checkpoint(rnd - 1, {"round": rnd, "step": step + 1, "rows": rows, "ref": ref})
        bar.close()
        self.sync_policy()
        if hooks.on_round_end:
            hooks.on_round_end(ctx)
        self.save_checkpoint(rnd)
        return records

    def _row_order(self, rnd: int, n_rows: int) -> list[int]:
        """A seeded order over the round's rows; each step takes the next batch_size * grad_accum of them."""
        cfg = self.cfg
        gen = torch.Generator().manual_seed(derive_seed(self.seed, rnd))
        order: list[int] = []
        per_step = cfg.batch_size * cfg.grad_accum
        while len(order) < cfg.steps * per_step:
            order += torch.randperm(n_rows, generator=gen).tolist()
        return order

    def _optimizer_step(self, rnd: int, step: int, rows: list[Row], ref: dict[str, list[torch.Tensor]] | None,
                        order: list[int]) -> dict[str, float]:
        """One optimizer step over ``grad_accum`` micro-batches; its metrics (loss, grad_norm, lr, step_s)."""
        cfg, method = self.cfg, self.method
        per_step = cfg.batch_size * cfg.grad_accum
        t0 = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        for micro in range(cfg.grad_accum):
            start = step * per_step + micro * cfg.batch_size
            # This rank's block of the global micro-batch (all of it in one process).
            idx = distributed.shard(order[start : start + cfg.batch_size], self.world)
            batch_rows = [rows[i] for i in idx]
            batch_ref = {role: [ref[role][i] for i in idx] for role in ref} if ref is not None else None
            # Several processes: gradients are all-reduced on the last micro-batch only (DDP wants the forward
            # inside no_sync too).
            with distributed.no_sync(self.model, last=micro == cfg.grad_accum - 1):
                batch = batch_logprobs(
                    self.model,
                    batch_rows,
                    pad_id=self.policy.pad_id,
                    ref=batch_ref,
                    with_hidden=method.needs_hidden,
                    modules=self.modules,
                )
                loss, metrics = self.objective(method, batch, self.params, rnd, step)  # batch mean, checked
                # Scale so that accumulated gradients equal those of one batch of batch_size * grad_accum.
                self.accelerator.backward(loss / cfg.grad_accum)
            sums["loss"] = sums.get("loss", 0.0) + loss.item() / cfg.grad_accum
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + float(v) / cfg.grad_accum
        if self.world.size > 1:  # DDP / FSDP averaged the model's gradients; a method's own modules here
            if self.modules is not None:
                distributed.average_gradients(list(self.modules.parameters()), self.world)
            sums = distributed.mean_over_ranks(sums, self.world)
        if cfg.max_grad_norm > 0:
            norm = self.accelerator.clip_grad_norm_(self._trainable(), cfg.max_grad_norm)
            sums["grad_norm"] = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
        sums["lr"] = self.scheduler.get_last_lr()[0]  # the lr this step used (before the schedule moves on)
        self.optimizer.step()
        self.scheduler.step()
        sums["step_s"] = time.perf_counter() - t0
        return sums

    def sync_policy(self) -> None:
        """FSDP: copy the sharded model's weights into the policy handle's whole copy (all ranks; collective)."""
        if self.sharded:
            self.policy.model.load_state_dict(distributed.full_state_dict(self.model))

    def _phase(self, what: str) -> contextlib.AbstractContextManager[None]:
        return progress.phase(what, min_report_s=2.0) if self.progress else contextlib.nullcontext()

    def _trainable(self) -> list[torch.nn.Parameter]:
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.modules is not None:
            params += list(self.modules.parameters())
        return params

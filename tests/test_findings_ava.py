"""Findings, item 4 (AVA, arXiv 2411.09341): the AVA reward models against a Bradley-Terry reward model.

The paper's Table (RM pairwise accuracy) compares a Bradley-Terry RM with AVA's reward heads on held-out
preference pairs. Our didactic version, at an equal budget (same backbone, same Adam steps, batch, lr):

- **BT**: :class:`harness.training.rewards.BradleyTerryRewardModel` on a copy of the warm-started policy (= pi_ref),
  fitted on the training pairs with -log sigmoid(r_w - r_l);
- **AVA-p**: the ``ava-p`` method trained on the same pairs; its reward is the head's last-step mean
  E_q[R_T] (:func:`alignment_harness_plugins.methods.ava.sequence_reward`), which the CER term ranks;
- **AVA-d**: the ``ava-d`` method trained on the benchmark's demonstrations (expert samples) only, never
  seeing a preference; same reward read-out.

Data: ``didactic-multi-r1`` (9 tokens, so AVA's TD term is non-empty; on one token it is empty and AVA-d's
head would never train). Training pairs come from the cell's seed, held-out pairs from seed + 1000 (two
independent draws of pi_ref pairs ranked by the true reward). Accuracy counts a tie as 1/2.

``python -m tests.test_findings_ava [SEEDS]`` prints the table of FINDINGS.md (mean ± 95% CI over seeds).
"""

from __future__ import annotations

import copy
import sys
import time
from typing import Any

import pytest
import torch

from alignment_harness_plugins.methods import ava
from harness.core.context import DataContext, TrainingData, WarmStartContext
from harness.core.data import Completion, Pair
from harness.core.plugins import get_host
from harness.engines.hf import HFEngine
from harness.models.lm import LM
from harness.models.loading import load_model
from harness.results.leaderboard import Stat
from harness.training.rewards import BradleyTerryRewardModel
from harness.training.trainer import TrainConfig, Trainer

BENCHMARK = "didactic-multi-r1"
HELD_OUT_SEED_OFFSET = 1000


def pair_accuracy(reward: Any, pairs: list[Pair]) -> float:
    """Fraction of pairs whose chosen response scores higher (a tie counts 1/2)."""
    prompts = [p.prompt for p in pairs]
    chosen = reward.batch(prompts, [Completion(p.prompt, p.chosen, "") for p in pairs])
    rejected = reward.batch(prompts, [Completion(p.prompt, p.rejected, "") for p in pairs])
    wins = [1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(chosen, rejected, strict=True)]
    return sum(wins) / len(wins)


class SummedReward:
    """A dense reward (one value per response token) read as its sum over the response."""

    def __init__(self, dense: Any) -> None:
        self.dense = dense

    def batch(self, prompts: list[Any], completions: list[Completion]) -> list[float]:
        return [float(sum(r)) for r in self.dense.batch(prompts, completions)]


def _policy(host: Any, params: Any, seed: int) -> LM:
    loaded = load_model("tiny:nano", seed=seed)
    lm = LM(loaded.model, loaded.tokenizer, HFEngine(loaded.model, loaded.tokenizer))
    host.registry.benchmark(BENCHMARK).warm_start(WarmStartContext(lm=lm, params=params, seed=seed))
    return lm


def _train_ava(host: Any, method: str, lm: LM, data: dict[str, list[Any]], cfg: TrainConfig, seed: int) -> Any:
    spec = host.registry.method(method)
    mparams = spec.params()
    training = TrainingData(loader=lambda kind: data[kind], reward_fn=None, provides=frozenset(data))
    trainer = Trainer(method=spec, method_params=mparams, cfg=cfg, policy=lm, data=training, seed=seed,
                      engine_factory=lambda m: HFEngine(m, lm.tokenizer), progress=False,
                      modules=spec.modules(lm.model, mparams))
    for rnd in range(cfg.rounds):
        trainer.train_round(rnd)
    return (ava.sequence_reward(trainer.policy, trainer.modules),
            SummedReward(ava.token_rewards(trainer.policy, trainer.modules)))


def rm_accuracies(seed: int, *, steps: int = 150, n_states: int = 10, n_pairs: int = 20, n_demos: int = 20,
                  lr: float = 3e-4, batch_size: int = 32) -> dict[str, float]:
    """Held-out pairwise accuracy of BT, AVA-p and AVA-d reward models trained at the same budget."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: one thread is faster, and immune to a busy machine
    try:
        return _rm_accuracies(seed, steps=steps, n_states=n_states, n_pairs=n_pairs, n_demos=n_demos, lr=lr,
                              batch_size=batch_size)
    finally:
        torch.set_num_threads(threads)


def _rm_accuracies(seed: int, *, steps: int, n_states: int, n_pairs: int, n_demos: int, lr: float,
                   batch_size: int) -> dict[str, float]:
    torch.manual_seed(seed)
    host = get_host()
    bench = host.registry.benchmark(BENCHMARK)
    params = bench.params(n_states=n_states, n_pairs=n_pairs, n_demos=n_demos)
    base = _policy(host, params, seed)
    enc = base.encoder
    train = bench.data("preferences", DataContext(params=params, encoder=enc, seed=seed))
    held = bench.data("preferences", DataContext(params=params, encoder=enc, seed=seed + HELD_OUT_SEED_OFFSET))
    demos = bench.data("demonstrations", DataContext(params=params, encoder=enc, seed=seed))
    cfg = TrainConfig(rounds=1, steps=steps, batch_size=batch_size, lr=lr, optimizer="adam", schedule="constant",
                      warmup_ratio=0.0)
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    bt = BradleyTerryRewardModel.from_lm(base)
    bt.fit(train, steps=steps, lr=lr, batch_size=batch_size, seed=seed)
    out["bt"] = pair_accuracy(bt, held)
    out["bt_train"] = pair_accuracy(bt, train)
    for method, data in (("ava-p", {"preferences": train}), ("ava-d", {"demonstrations": demos})):
        lm = LM(copy.deepcopy(base.model), base.tokenizer, None)
        lm.engine = HFEngine(lm.model, lm.tokenizer)
        last, summed = _train_ava(host, method, lm, data, cfg, seed)
        out[method] = pair_accuracy(last, held)
        out[f"{method}_train"] = pair_accuracy(last, train)
        out[f"{method}-sum"] = pair_accuracy(summed, held)
        out[f"{method}-sum_train"] = pair_accuracy(summed, train)
    out["seconds"] = time.perf_counter() - t0
    return out


@pytest.mark.slow
def test_ava_reward_models_against_bradley_terry():
    """What our runs show (3 seeds here; FINDINGS.md has 5): see the assertions' comments."""
    seeds = (0, 1, 2)
    runs = [rm_accuracies(s) for s in seeds]
    stat = {k: Stat.of([r[k] for r in runs]) for k in ("bt", "ava-p", "ava-d")}
    # AVA-p ranks held-out pairs above chance (its 95% interval above 0.5), and on par with BT trained on the
    # same pairs (their paired difference covers 0; the paper has AVA slightly ahead, our seeds cannot
    # resolve a gap of that size).
    assert stat["ava-p"].mean - stat["ava-p"].half > 0.5, stat
    gap = Stat.of([r["ava-p"] - r["bt"] for r in runs])
    assert gap.mean - gap.half <= 0 <= gap.mean + gap.half, gap
    # AVA-d, trained on demonstrations only, does not rank pi_ref pairs: below AVA-p, paired by seed.
    below = Stat.of([r["ava-p"] - r["ava-d"] for r in runs])
    assert below.mean - below.half > 0, below


def main(argv: list[str]) -> None:
    seeds = [int(s) for s in argv] or [0, 1, 2, 3, 4]
    runs = []
    for s in seeds:
        r = rm_accuracies(s)
        runs.append(r)
        print(f"seed {s}: " + "  ".join(f"{k}={v:.3f}" for k, v in r.items()), flush=True)
    print("\n| reward model | held-out pairwise accuracy | training-pair accuracy |\n|---|---|---|")
    for k in ("bt", "ava-p", "ava-p-sum", "ava-d", "ava-d-sum"):
        h, t = Stat.of([r[k] for r in runs]), Stat.of([r[f"{k}_train"] for r in runs])
        print(f"| {k} | {h.mean:.3f} ± {h.half or 0:.3f} (n={h.n}) | {t.mean:.3f} ± {t.half or 0:.3f} (n={t.n}) |")


if __name__ == "__main__":
    main(sys.argv[1:])

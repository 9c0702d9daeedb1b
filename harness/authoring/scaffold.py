"""``harness new method NAME`` / ``harness new benchmark NAME``: an installable plugin package to start from.

The package passes its own test as generated: ``pip install -e harness-NAME`` then ``pytest harness-NAME``
(the test runs ``harness check-plugin`` and checks the loss or the score against values computed by hand).
The method is SimPO (a reference-free preference loss); the benchmark is two-number addition. Replace the
bodies, keep the shapes; docs/plugins.md has the whole contract.
"""

from __future__ import annotations

import keyword
import re
import string
from pathlib import Path

import click

from harness.core.errors import HarnessError

PYPROJECT = """\
[build-system]
requires = ["setuptools>=69", "wheel"]
build-backend = "setuptools.build_meta"

[project]
name = "harness-$dist"
version = "0.1.0"
description = "$description"
requires-python = ">=3.10"
dependencies = ["alignment-harness"]

[project.optional-dependencies]
test = ["pytest>=8"]

# The harness finds the plugin through this entry point (group "harness"): name = "package.module".
[project.entry-points.harness]
$name = "$pkg.$kind"

[tool.setuptools]
packages = ["$pkg"]
"""

README = """\
# harness-$dist

A $kind plugin for alignment-harness: `$name`.

    pip install -e .                  # registers the entry point `$name`
    harness check-plugin $name        # the contract, on the tiny model, in seconds
    pytest tests                      # check-plugin plus hand-computed values
    harness $kinds                    # lists `$name` with its parameters

The contract for every plugin kind: docs/plugins.md in alignment-harness.
"""

INIT = '''\
"""harness-$dist: the `$name` $kind for alignment-harness (see $kind.py)."""

__version__ = "0.1.0"
'''

METHOD = '''\
"""$title: a method plugin for alignment-harness (here: SimPO, a reference-free preference loss).

Paper: Meng et al. 2024, "SimPO: Simple Preference Optimization with a Reference-Free Reward",
arXiv 2405.14734. The implicit reward of a response is its length-normalised log-probability, scaled by
beta; the loss is -log sigmoid(beta * (r_chosen - r_rejected) - gamma), one value per preference pair.

What the harness does around this file: each round it calls ``sampler(ctx)`` for training rows, scores
every role of a batch of rows in one forward pass, and hands the objective a ``LogProbBatch``; the
objective returns one loss per row and a dict of scalar metrics. See docs/plugins.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from harness import PREFERENCES, LogProbBatch, MethodSpec, hookimpl, param
from harness.samplers import offline_preferences


@dataclass(frozen=True)
class Params:
    """The method's parameters: a FROZEN dataclass; every field has a default and a help text (``param``).
    Suites set them (``[methods.$name] beta = 2.0``), so does ``harness run --set beta=2.0``; the types
    are checked."""

    beta: float = param(2.0, "scale of the length-normalised log-prob reward")
    gamma: float = param(0.5, "target reward margin between chosen and rejected")
    limit: int | None = param(None, "use at most this many preference pairs (None = all)")


def loss_fn(logp_chosen: torch.Tensor, len_chosen: torch.Tensor, logp_rejected: torch.Tensor,
            len_rejected: torch.Tensor, *, beta: float, gamma: float) -> torch.Tensor:
    """The per-pair loss, a pure function of tensors (unit-test it against hand-computed values)."""
    r_chosen = beta * logp_chosen / len_chosen.clamp(min=1)
    r_rejected = beta * logp_rejected / len_rejected.clamp(min=1)
    return -F.logsigmoid(r_chosen - r_rejected - gamma)


def objective(batch: LogProbBatch, params: Params) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(loss, metrics)`` for one batch of B rows.

    - ``batch.logps[role]``: [B] summed response log-probs under the policy (with gradients);
      the roles are the row's: ``chosen`` and ``rejected`` for ``offline_preferences``;
    - ``batch.lengths(role)``: [B] response lengths in tokens;
    - ``batch.tokens[role]``: per-token log-probs (``.token_logps`` [B, T]) and ``.mask`` [B, T];
    - ``batch.ref_logps[role]``: the same under the reference (empty here: ``reference="none"``);
    - ``batch.values[name]``: [B] per-row scalars a sampler attached (rewards, weights).

    Return the loss with ONE value per row (shape [B]; the trainer averages it) that carries a gradient,
    and metrics that are scalars (detach them). ``harness check-plugin $name`` checks all of this.
    """
    loss = loss_fn(batch.logps["chosen"], batch.lengths("chosen"), batch.logps["rejected"],
                   batch.lengths("rejected"), beta=params.beta, gamma=params.gamma)
    margin = (batch.logps["chosen"] / batch.lengths("chosen") - batch.logps["rejected"] / batch.lengths("rejected"))
    return loss, {"margin": margin.mean().detach(), "accuracy": (margin > 0).float().mean()}


def sampler(ctx):  # noqa: ANN001, ANN201 - a sampler: RoundContext -> list[Row]
    """The round's training rows. ``ctx`` has ``data`` (the benchmark's demonstrations(), preferences(),
    prompts(), reward()), ``policy`` / ``reference`` (generate or score), ``params``, ``rng`` (seeded by
    seed and round), ``round`` and ``state`` (kept across rounds). harness.training.samplers has the common ones."""
    return offline_preferences(ctx, limit=ctx.params.limit)


@hookimpl
def register_methods(register) -> None:  # noqa: ANN001
    """Register ``$name``: called once when the harness loads plugins."""
    register(
        MethodSpec(
            name="$name",  # what suites and `harness run --method` call it
            family="preference",  # supervised | preference | unpaired-feedback | on-policy | imitation
            description="SimPO: length-normalised log-prob margin, no reference model",
            paper="Meng et al. 2024, arXiv 2405.14734",
            sampler=sampler,  # RoundContext -> list[Row]
            objective=objective,  # (LogProbBatch, Params) -> (loss [B], {name: scalar})
            params=Params,  # a frozen dataclass of parameters
            needs=frozenset({PREFERENCES}),  # data kinds the benchmark must provide
            reference="none",  # "initial" (frozen copy), "round" (reset each round) or "none"
        )
    )
'''

METHOD_TEST = '''\
"""$title: the plugin passes `harness check-plugin`, and its loss matches values computed by hand."""

import math
import os
import subprocess
import sys

import torch

from harness import LogProbBatch
from harness.lm import TokenLogProbs
from $pkg.$kind import Params, objective


def test_check_plugin_passes():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "harness.cli", "check-plugin", "$name"], capture_output=True,
                         text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "FAIL" not in res.stdout and " 0 failed" in res.stdout


def _tokens(lengths):
    t = max(lengths)
    mask = torch.tensor([[1.0] * n + [0.0] * (t - n) for n in lengths])
    return TokenLogProbs(torch.zeros_like(mask), mask)


def test_loss_by_hand():
    # chosen: logp -2 over 2 tokens (-1 per token); rejected: logp -6 over 3 tokens (-2 per token)
    # row 2 the other way round. beta = 2, gamma = 0.5:
    #   row 1: x = 2 * (-1) - 2 * (-2) - 0.5 = 1.5   -> loss = log(1 + e^-1.5)
    #   row 2: x = 2 * (-2) - 2 * (-1) - 0.5 = -2.5  -> loss = log(1 + e^2.5)
    batch = LogProbBatch(
        logps={"chosen": torch.tensor([-2.0, -6.0], requires_grad=True),
               "rejected": torch.tensor([-6.0, -2.0], requires_grad=True)},
        tokens={"chosen": _tokens([2, 3]), "rejected": _tokens([3, 2])},
    )
    loss, metrics = objective(batch, Params(beta=2.0, gamma=0.5))
    assert loss.shape == (2,)
    assert math.isclose(loss[0].item(), math.log(1 + math.exp(-1.5)), rel_tol=1e-6)
    assert math.isclose(loss[1].item(), math.log(1 + math.exp(2.5)), rel_tol=1e-6)
    assert math.isclose(float(metrics["accuracy"]), 0.5)
    loss.sum().backward()
    assert batch.logps["chosen"].grad is not None
'''

BENCHMARK = '''\
"""$title: a benchmark plugin for alignment-harness (here: adding two small numbers).

Items are "What is a + b?" for a, b in 0..size-1. The benchmark evaluates (generate an answer per item,
score it, aggregate) and provides training data: demonstrations (the right answers), prompts, and a
reward (1 for the right answer). Replace the items and the scoring; keep the shapes. See docs/plugins.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness import (
    DEMONSTRATIONS,
    PROMPTS,
    REWARD,
    BenchmarkSpec,
    Completion,
    DataContext,
    EvalContext,
    EvalResult,
    MetricSpec,
    Prompt,
    Sequence,
    hookimpl,
    param,
)


@dataclass(frozen=True)
class Params:
    """The benchmark's parameters (a FROZEN dataclass with defaults and help texts); suites set them in
    ``[benchmark_params.$name]`` or ``[data]``. ``limit`` is the conventional cap on evaluated items."""

    size: int = param(5, "numbers 0..size-1 are added: size * size items")
    max_new_tokens: int = param(8, "tokens generated per answer")
    limit: int | None = param(None, "evaluate at most this many items (None = all)")


def items(params: Params) -> list[tuple[str, str]]:
    """(question, answer) pairs, always in the same order."""
    return [(f"What is {a} + {b}?", str(a + b)) for a in range(params.size) for b in range(params.size)]


def score(answer: str, completion_text: str) -> float:
    """1.0 when the first number in the completion is the answer, else 0.0."""
    found = re.search(r"-?\\d+", completion_text)
    return float(found is not None and found.group() == answer)


def reward(prompt: Prompt, completion: Completion) -> float:
    """The reward on-policy methods train with: a float per (prompt, completion)."""
    return score(prompt.meta["answer"], completion.text)


def data(kind: str, ctx: DataContext) -> list:
    """Training data of a kind listed in ``provides``: demonstrations -> list[Sequence], prompts ->
    list[Prompt] (preferences -> list[Pair]). ``ctx.encoder`` turns text into token ids."""
    prompts = [ctx.encoder.prompt(q, {"answer": a}) for q, a in items(ctx.params)]
    if kind == DEMONSTRATIONS:
        return [Sequence(p, ctx.encoder.response(p.meta["answer"])) for p in prompts]
    return prompts


def evaluate(ctx: EvalContext) -> EvalResult:
    """Generate with ``ctx.generate`` (greedy), score, aggregate. Returns metrics (name -> float) and
    per-item records (dicts, stored as they are). ``ctx.lm`` scores log-probs if you need them."""
    pairs = items(ctx.params)[: ctx.limit]
    prompts = [ctx.encoder.prompt(q, {"answer": a}) for q, a in pairs]
    outs = ctx.generate(prompts, max_new_tokens=ctx.params.max_new_tokens)
    records = [{"question": q, "answer": a, "completion": o[0].text, "correct": score(a, o[0].text)}
               for (q, a), o in zip(pairs, outs, strict=True)]
    accuracy = sum(r["correct"] for r in records) / max(1, len(records))
    return EvalResult(metrics={"accuracy": accuracy}, records=records)


@hookimpl
def register_benchmarks(register) -> None:  # noqa: ANN001
    """Register ``$name``: called once when the harness loads plugins."""
    register(
        BenchmarkSpec(
            name="$name",  # what suites and `harness run --benchmark` call it
            description="Two-number addition, exact match",
            paper="-",
            evaluate=evaluate,  # EvalContext -> EvalResult
            params=Params,  # a frozen dataclass of parameters
            version="1",  # bump when items or scoring change: it is part of every cell's identity
            provides=frozenset({DEMONSTRATIONS, PROMPTS, REWARD}),  # data kinds for methods
            data=data,  # (kind, DataContext) -> list
            reward=reward,  # (Prompt, Completion) -> float
            # what the leaderboard reads: direction, goal or diagnostic, where a record holds the item's value
            metrics=(MetricSpec("accuracy", item="correct"),),
        )
    )
'''

BENCHMARK_TEST = '''\
"""$title: the plugin passes `harness check-plugin`, and its score matches values computed by hand.

Only the public API (``from harness import ...``): a fake engine and encoder stand in for the model."""

import os
import subprocess
import sys

from harness import Completion, EvalContext, Prompt
from $pkg.$kind import Params, evaluate, items, score


class TextEncoder:
    """Turns a question into a Prompt (no tokenizer needed: the fake engine reads the text)."""

    def prompt(self, text, meta=None):
        return Prompt(ids=(1,), text=text, meta=meta or {})


class FixedEngine:
    """Answers every prompt with the same text."""

    def __init__(self, answer):
        self.answer = answer

    def generate(self, prompts, *, n=1, **_):
        return [[Completion(p, (2,), self.answer, "stop") for _ in range(n)] for p in prompts]


def test_check_plugin_passes():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "harness.cli", "check-plugin", "$name", "--answer", "4"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "FAIL" not in res.stdout and " 0 failed" in res.stdout


def test_score_by_hand():
    assert score("4", "4") == 1.0 and score("4", "It is 4.") == 1.0
    assert score("4", "14") == 0.0 and score("4", "no idea") == 0.0


def test_accuracy_by_hand():
    # 25 items a + b for a, b in 0..4; an engine that always answers "4" is right for
    # (0,4) (1,3) (2,2) (3,1) (4,0): 5 of 25 = 0.2.
    params = Params()
    assert len(items(params)) == 25
    res = evaluate(EvalContext(engine=FixedEngine("4"), lm=None, encoder=TextEncoder(), params=params, seed=0))
    assert res.metrics["accuracy"] == 0.2
    assert sum(r["correct"] for r in res.records) == 5
'''

KINDS = {"method": (METHOD, METHOD_TEST), "benchmark": (BENCHMARK, BENCHMARK_TEST)}


def scaffold(kind: str, name: str, parent: Path) -> Path:
    """Write ``parent/harness-<name>/`` for a plugin of ``kind``; returns the folder."""
    if kind not in KINDS:
        raise HarnessError(f"harness new {kind}: unknown kind; use method or benchmark")
    if not re.fullmatch(r"[a-z][a-z0-9_-]*", name):
        raise HarnessError(f"harness new {kind} {name!r}: use lowercase letters, digits, - and _, starting with a "
                           f"letter (e.g. simpo, my-method)")
    pkg = "harness_" + name.replace("-", "_")
    if keyword.iskeyword(pkg):  # pragma: no cover - the prefix makes this impossible
        raise HarnessError(f"harness new: {pkg} is a Python keyword; pick another name")
    dist = name.replace("_", "-")
    root = parent / f"harness-{dist}"
    if root.exists():
        raise HarnessError(f"harness new {kind} {name}: {root} exists; remove it or pick another name")
    title = f"{name} ({kind})"
    values = {"name": name, "pkg": pkg, "dist": dist, "kind": kind, "kinds": kind + "s", "title": title,
              "description": f"The {name} {kind} for alignment-harness"}
    module, test = KINDS[kind]
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        f"{pkg}/__init__.py": INIT,
        f"{pkg}/{kind}.py": module,
        f"tests/test_{pkg}.py": test,
    }
    for rel, template in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(string.Template(template).substitute(values))
    return root


@click.command(name="new")
@click.argument("kind", type=click.Choice(sorted(KINDS)))
@click.argument("name")
@click.option("--dir", "parent", type=click.Path(path_type=Path, file_okay=False), default=Path("."),
              show_default=True, help="Where to create the harness-NAME folder.")
def new(kind: str, name: str, parent: Path) -> None:
    """Scaffold an installable plugin package: harness new method NAME | harness new benchmark NAME.

    It has the entry point, a module whose docstrings say what each field means, and a test (check-plugin
    plus hand-computed values) that passes as generated."""
    root = scaffold(kind, name, parent)
    click.echo(f"created {root}: {kind} '{name}'")
    click.echo(f"next: pip install -e {root} && harness check-plugin {name} && pytest {root / 'tests'}")


def register(cli: click.Group) -> None:
    """Attach ``new`` to the ``harness`` group."""
    cli.add_command(new)

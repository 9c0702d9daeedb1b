"""``harness check-plugin PATH_OR_NAME``: a plugin's contract, checked on the tiny model in seconds.

For each method the plugin registers: its sampler builds rows from a small built-in toy benchmark (or
``--benchmark``'s data), the objective's loss on a batch has one finite value per row and carries a
gradient that reaches the model's weights, its metrics are scalars, and the same seed gives the same
loss. For each benchmark: its data of every kind it provides, its reward, and ``evaluate`` on a fake
engine that gives every prompt the same fixed answer (finite metrics, dict records, the same result
twice). Engines and commands: that they register. Each check prints one ``ok`` or ``FAIL`` line.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import torch

from harness.core.context import DataContext, EvalContext, EvalResult, TrainingData
from harness.core.contract import PluginError, batch_size_of, call_sampler, check_output, source_file
from harness.core.data import Completion, Pair, Prompt, implied_kinds
from harness.core.data import Sequence as Seq
from harness.core.errors import HarnessError
from harness.core.plugins import PluginHost, load

TOY_PROMPTS = ["add 1 2", "say hi", "count to 3", "name a color", "2 times 2", "opposite of up", "abc", "xyz"]
TOY_ANSWERS = ["3", "hi", "1 2 3", "red", "4", "down", "def", "zyx"]
KIND_TYPES = {"demonstrations": Seq, "preferences": Pair, "prompts": Prompt}


def toy_data(encoder: Any, kind: str) -> list[Any]:
    """Eight fixed prompts with answers: demonstrations, preferences (answer vs "no") or prompts."""
    prompts = [encoder.prompt(p, {"answer": a}) for p, a in zip(TOY_PROMPTS, TOY_ANSWERS, strict=True)]
    if kind == "demonstrations":
        return [Seq(p, encoder.response(a)) for p, a in zip(prompts, TOY_ANSWERS, strict=True)]
    if kind == "preferences":
        return [Pair(p, encoder.response(a), encoder.response("no")) for p, a in zip(prompts, TOY_ANSWERS, strict=True)]
    return prompts


def toy_reward(prompt: Prompt, completion: Completion) -> float:
    """1 when the completion is the prompt's answer, plus a little for short completions (not flat)."""
    return float(completion.text.strip() == prompt.meta.get("answer")) + 1.0 / (1 + len(completion.ids))


class FixedEngine:
    """A fake engine (no model): every prompt gets ``n`` copies of the same answer."""

    name = "fixed"

    def __init__(self, answer: str, tokenizer: Any) -> None:
        self.answer = answer
        self.ids = tuple(tokenizer.encode(answer, add_special_tokens=False))

    def generate(self, prompts: Sequence[Prompt], *, n: int = 1, **_: Any) -> list[list[Completion]]:
        return [[Completion(p, self.ids, self.answer, "stop") for _ in range(n)] for p in prompts]


@dataclass
class Report:
    """The check lines; ``failed`` when any check failed."""

    echo: Callable[[str], None]
    failed: int = 0
    passed: int = 0

    def ok(self, what: str) -> None:
        self.passed += 1
        self.echo(f"ok    {what}")

    def fail(self, what: str) -> None:
        self.failed += 1
        self.echo(f"FAIL  {what}")


def host_for(target: str, base: PluginHost | None = None) -> tuple[PluginHost, str | None, list[tuple[str, str]]]:
    """The host to check with, the plugin's name (None: a spec name was given) and the (kind, name) specs
    to check. ``target``: a .py file, an importable module, a loaded plugin's name, or a method/benchmark
    name."""
    looks_like_file = target.endswith(".py") or "/" in target
    if base is not None and not looks_like_file:
        if target in base.infos:
            return base, target, _specs_of(base, target)
        for kind in ("method", "benchmark", "engine"):
            if target in base.registry.specs[kind]:
                return base, None, [(kind, target)]
    if not looks_like_file and "." not in target:
        raise HarnessError(f"check-plugin {target}: no loaded plugin, method or benchmark of that name; give a "
                           f"path to a .py file, an importable module, or a name from `harness plugins`")
    host = load([target], env={k: v for k, v in __import__("os").environ.items() if k != "HARNESS_PLUGINS"})
    name = Path(target).stem if looks_like_file else target
    return host, name, _specs_of(host, name)


def _specs_of(host: PluginHost, plugin: str) -> list[tuple[str, str]]:
    return [(kind[:-1], n) for kind, names in host.registry.names_by_plugin(plugin).items() for n in names]


def _policy(model: str, seed: int) -> Any:
    from harness.cell.run import seed_everything
    from harness.engines.hf import HFEngine
    from harness.models.lm import LM
    from harness.models.loading import load_model

    seed_everything(seed)
    loaded = load_model(model, seed=seed)
    return LM(loaded.model, loaded.tokenizer, HFEngine(loaded.model, loaded.tokenizer))


def _training_data(lm: Any, bench: Any, seed: int) -> TrainingData:
    if bench is None:
        return TrainingData(loader=lambda kind: toy_data(lm.encoder, kind), reward_fn=toy_reward,
                            provides=frozenset({"demonstrations", "preferences", "prompts", "reward"}))
    params = bench.params()
    ctx = DataContext(params=params, encoder=lm.encoder, seed=seed)
    return TrainingData(loader=lambda kind: bench.data(kind, ctx), reward_fn=bench.reward, provides=bench.provides)


def _one_loss(method: Any, bench: Any, model: str, seed: int, batch_size: int
              ) -> tuple[torch.Tensor, dict[str, Any], Any, list[Any], int]:
    """Sampler -> reference log-probs -> one batch -> objective, as the trainer's first step does."""
    from harness.models.logprobs import batch_logprobs
    from harness.training.trainer import TrainConfig, Trainer

    lm = _policy(model, seed)
    params = method.params()
    cfg = TrainConfig(rounds=1, steps=1, batch_size=batch_size, ref_batch_size=batch_size)
    modules = method.modules(lm.model, params) if method.modules else None
    trainer = Trainer(method=method, method_params=params, cfg=cfg, policy=lm, data=_training_data(lm, bench, seed),
                      seed=seed, engine_factory=lambda m: lm.engine, progress=False, modules=modules)
    ctx = trainer.round_context(0)
    if method.hooks.on_round_start:
        method.hooks.on_round_start(ctx)
    rows = call_sampler(method, ctx)
    if not isinstance(rows, list) or not rows:
        raise PluginError(f"method '{method.name}' ({source_file(method.sampler)}): the sampler returned "
                          f"{type(rows).__name__} of {len(rows) if hasattr(rows, '__len__') else '?'} rows; rule: "
                          f"a non-empty list of harness.core.data.Row")
    batch_rows = rows[:batch_size]
    ref = None
    if trainer.reference is not None:
        ref = trainer.reference.logprobs(batch_rows, lm.pad_id, batch_size)
    batch = batch_logprobs(trainer.model, batch_rows, pad_id=lm.pad_id, ref=ref, with_hidden=method.needs_hidden,
                           modules=modules)
    loss, metrics = check_output(method, method.objective(batch, params), batch_size_of(batch))
    return loss, dict(metrics), trainer, rows, len(batch_rows)


def check_method(method: Any, rep: Report, *, model: str, seed: int, batch_size: int, bench: Any = None) -> None:
    where = f"method '{method.name}'"
    try:
        loss, metrics, trainer, rows, b = _one_loss(method, bench, model, seed, batch_size)
    except (PluginError, HarnessError) as exc:
        rep.fail(exc.message)
        return
    except Exception as exc:  # noqa: BLE001
        rep.fail(f"{where}: {type(exc).__name__}: {exc}")
        return
    rep.ok(f"{where}: sampler built {len(rows)} rows (roles: {', '.join(rows[0].seqs)})")
    shape = "[" + ", ".join(map(str, loss.shape)) + "]"
    rep.ok(f"{where}: loss shape {shape} for B={b} rows{' (a 0-d batch mean)' if loss.dim() == 0 else ''}; "
           f"metrics are scalars ({', '.join(metrics) or 'none'})")
    if not bool(torch.isfinite(loss).all()):
        rep.fail(f"{where}: the loss is not finite on the first batch: {loss.detach().tolist()}")
        return
    rep.ok(f"{where}: the loss is finite (mean {loss.mean().item():.6g})")
    loss.mean().backward()
    weights = [p for p in trainer.model.parameters() if p.requires_grad]
    reached = [p for p in weights if p.grad is not None]  # connected to the loss in the autograd graph
    nonzero = sum(1 for p in reached if bool((p.grad != 0).any()))
    if not reached:
        rep.fail(f"{where}: the gradient reaches none of the model's {len(weights)} weight tensors; rule: the loss "
                 f"depends on batch.logps / batch.tokens of the policy")
    else:
        zero = "" if nonzero else " (all zero on this batch: e.g. equal rewards give zero advantages)"
        rep.ok(f"{where}: the gradient reaches {len(reached)} of {len(weights)} weight tensors{zero}")
    try:
        again = _one_loss(method, bench, model, seed, batch_size)[0]
    except Exception as exc:  # noqa: BLE001
        rep.fail(f"{where}: a second run failed: {type(exc).__name__}: {exc}")
        return
    if again.shape == loss.shape and torch.allclose(again.detach(), loss.detach(), rtol=1e-5, atol=1e-6):
        rep.ok(f"{where}: the same seed gives the same loss")
    else:
        rep.fail(f"{where}: the same seed gave a different loss ({loss.mean().item():.6g} then "
                 f"{again.mean().item():.6g}); rule: draw randomness from ctx.rng or torch's seeded generator")


def check_benchmark(bench: Any, rep: Report, *, model: str, seed: int, answer: str, limit: int) -> None:
    where = f"benchmark '{bench.name}' ({source_file(bench.evaluate)})"
    lm = _policy(model, seed)
    params = bench.params()
    prompt = None
    for kind in sorted(set(bench.provides) - {"reward"}):
        try:
            items = bench.data(kind, DataContext(params=params, encoder=lm.encoder, seed=seed))
        except Exception as exc:  # noqa: BLE001
            rep.fail(f"{where}: data('{kind}') raised {type(exc).__name__}: {exc}")
            continue
        want = KIND_TYPES.get(kind)
        bad = [type(x).__name__ for x in items if want is not None and not isinstance(x, want)][:1]
        if not isinstance(items, list) or not items or bad:
            rep.fail(f"{where}: data('{kind}') gave {type(items).__name__} of {len(items) if hasattr(items, '__len__') else '?'}"
                     f" items{f' (one is a {bad[0]})' if bad else ''}; rule: a non-empty list of "
                     f"harness.core.data.{want.__name__ if want else '?'}")
            continue
        rep.ok(f"{where}: data('{kind}'): {len(items)} {want.__name__ if want else ''} items")
        first = items[0]
        prompt = prompt or (first if isinstance(first, Prompt) else getattr(first, "prompt", None))
    if "reward" in bench.provides:
        p = prompt or lm.encoder.prompt("1 + 1")
        engine = FixedEngine(answer, lm.tokenizer)
        completion = engine.generate([p])[0][0]
        try:
            value = bench.reward(p, completion)
            ok = isinstance(value, (int, float)) and math.isfinite(value) or (
                isinstance(value, (list, tuple)) and all(math.isfinite(float(v)) for v in value))
        except Exception as exc:  # noqa: BLE001
            rep.fail(f"{where}: reward(prompt, completion) raised {type(exc).__name__}: {exc}")
        else:
            (rep.ok if ok else rep.fail)(f"{where}: reward of the answer {answer!r} is {value!r}"
                                         + ("" if ok else "; rule: a finite float (or a list of per-token floats)"))

    def run() -> EvalResult:
        return bench.evaluate(EvalContext(engine=FixedEngine(answer, lm.tokenizer), lm=lm, encoder=lm.encoder,
                                          params=params, seed=seed, limit=limit, reference=lm))

    try:
        res = run()
    except Exception as exc:  # noqa: BLE001
        rep.fail(f"{where}: evaluate raised {type(exc).__name__}: {exc} (on a fake engine answering {answer!r})")
        return
    if not isinstance(res, EvalResult):
        rep.fail(f"{where}: evaluate returned {type(res).__name__}; rule: return harness.core.context.EvalResult")
        return
    bad = {k: v for k, v in res.metrics.items() if not isinstance(v, (int, float)) or not math.isfinite(float(v))}
    if not res.metrics or bad:
        rep.fail(f"{where}: evaluate's metrics {bad or res.metrics}; rule: a non-empty dict of finite floats")
        return
    if not isinstance(res.records, list) or not all(isinstance(r, dict) for r in res.records):
        rep.fail(f"{where}: evaluate's records are not a list of dicts; rule: one dict per item")
        return
    shown = ", ".join(f"{k}={float(v):.4g}" for k, v in sorted(res.metrics.items()))
    rep.ok(f"{where}: evaluate on a fake engine answering {answer!r}: {shown}; {len(res.records)} records")
    try:
        again = run()
    except Exception as exc:  # noqa: BLE001
        rep.fail(f"{where}: evaluate failed the second time: {type(exc).__name__}: {exc}")
        return
    same = {k: float(v) for k, v in again.metrics.items()} == {k: float(v) for k, v in res.metrics.items()}
    (rep.ok if same else rep.fail)(f"{where}: the same answers give the same metrics"
                                   + ("" if same else f" (got {again.metrics} then {res.metrics})"))


def check(target: str, *, base: PluginHost | None = None, model: str = "tiny:nano", seed: int = 0,
          batch_size: int = 4, benchmark: str | None = None, answer: str = "42", limit: int = 8,
          echo: Callable[[str], None] = click.echo) -> Report:
    """Run every check on the plugin (or the one method/benchmark) named by ``target``."""
    rep = Report(echo)
    if base is not None and target in base.registry.quarantined:  # installed, but failed to import or register
        rep.fail(f"plugin '{target}' is quarantined (installed, but skipped): {base.registry.quarantined[target]}")
        return rep
    host, plugin, specs = host_for(target, base)
    if plugin is not None:
        info = host.infos.get(plugin)
        if not specs:
            rep.fail(f"plugin '{plugin}' registered nothing; rule: implement register_methods / register_benchmarks "
                     f"(from harness import hookimpl) and call register(...)")
            return rep
        rep.ok(f"plugin '{plugin}' ({info.source if info else target}) loads and registers "
               + ", ".join(f"{k} '{n}'" for k, n in specs))
    bench = host.registry.benchmark(benchmark, where="--benchmark") if benchmark else None
    for kind, name in specs:
        spec = host.registry.specs[kind][name]
        if kind == "method":
            if bench is not None and set(spec.needs) - implied_kinds(bench.provides):
                rep.fail(f"method '{name}' needs {sorted(spec.needs)}; --benchmark {bench.name} provides "
                         f"{sorted(bench.provides)}")
                continue
            check_method(spec, rep, model=model, seed=seed, batch_size=batch_size, bench=bench)
        elif kind == "benchmark":
            check_benchmark(spec, rep, model=model, seed=seed, answer=answer, limit=limit)
        else:
            available = bool(spec.available())
            rep.ok(f"engine '{name}' registers ({'available here' if available else 'not available here: ' + spec.install_hint})")
    return rep


@click.command(name="check-plugin")
@click.argument("target", metavar="PATH_OR_NAME")
@click.option("--model", default="tiny:nano", show_default=True, help="The model the checks run on.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--batch-size", default=4, show_default=True, type=int, help="Rows of the checked batch.")
@click.option("--benchmark", default=None, help="Train methods on this benchmark's data (default: a built-in "
              "toy set of 8 prompts with demonstrations, preferences and a reward).")
@click.option("--answer", default="42", show_default=True, help="The fake engine's answer to every prompt.")
@click.option("--limit", default=8, show_default=True, type=int, help="Items a benchmark evaluates.")
@click.pass_context
def check_plugin(ctx: click.Context, target: str, model: str, seed: int, batch_size: int, benchmark: str | None,
                 answer: str, limit: int) -> None:
    """Check a plugin's contract on the tiny model in seconds: a .py file, a module, or a plugin, method or
    benchmark name. Prints one line per check; exit status 0 when all pass, 1 when one fails, 2 for bad
    input."""
    base = (ctx.find_root().obj or {}).get("host")
    rep = check(target, base=base, model=model, seed=seed, batch_size=batch_size, benchmark=benchmark,
                answer=answer, limit=limit)
    click.echo(f"\n{rep.passed} passed, {rep.failed} failed")
    if rep.failed:
        ctx.exit(1)


def register(cli: click.Group) -> None:
    """Attach ``check-plugin`` to the ``harness`` group."""
    cli.add_command(check_plugin)

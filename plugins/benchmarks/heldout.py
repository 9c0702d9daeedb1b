"""``heldout-nll``: the policy's negative log-likelihood of held-out demonstrations, from any dataset.

The cheap held-out measure for "train on a dataset, evaluate on its held-out part": for each of the first
``limit`` demonstrations of ``data`` (a named dataset, ``hf:<org/name>[:config][@split]`` or a local file,
read exactly as training data is: conversational rows through the chat template), the mean negative log-
probability per response token under the policy (teacher forcing, no generation). Metrics: ``nll`` (the
mean over items of the per-token NLL; lower is better) and ``nll_sum`` (the mean over items of the summed
NLL of the response), both declared lower-is-better goals. Per-item records carry both and an ``item_id``
(a hash of the demonstration's tokens), so methods are compared item by item.

It measures how likely the reference responses are, not whether the model's own answers are right: pair it
with a generation benchmark (gsm8k-chat, mt-bench) when there is time for one.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness import BenchmarkSpec, EvalContext, EvalResult, HarnessError, MetricSpec, hookimpl, item_id, param


@dataclass(frozen=True)
class HeldoutParams:
    data: str = param("", "the held-out demonstrations: a dataset name, hf:<org/name>[:config][@split], or a local file")
    split: str = param("", "the split to read (default: the dataset's own)")
    limit: int | None = param(100, "score the first N demonstrations (None = all)")
    batch_size: int = param(8, "sequences per forward pass")


def evaluate(ctx: EvalContext) -> EvalResult:
    from harness.datasets import dataset_params, load_kind, lookup, registry

    p = ctx.params
    if not p.data:
        raise HarnessError("heldout-nll: set its data, e.g. [benchmark_params.heldout-nll] data = \"test.jsonl\"")
    spec = lookup(p.data, registry(), where="heldout-nll data")
    params = dataset_params({"split": p.split, "limit": ctx.limit}, where="heldout-nll")  # ctx.limit: p.limit unless given
    demos = load_kind(spec, params, "demonstrations", ctx.encoder)
    ctx.progress(f"heldout-nll: scoring {len(demos)} held-out demonstrations")
    total = ctx.lm.logprobs(demos, batch_size=p.batch_size)
    records = []
    for i, (seq, lp) in enumerate(zip(demos, total.tolist(), strict=True)):
        n = max(len(seq.response), 1)
        records.append({"item_id": item_id(seq.prompt.ids, seq.response), "index": seq.prompt.meta.get("index", i),
                        "nll": -lp / n, "nll_sum": -lp, "tokens": n})
    metrics = {
        "nll": sum(r["nll"] for r in records) / len(records),
        "nll_sum": sum(r["nll_sum"] for r in records) / len(records),
    }
    return EvalResult(metrics=metrics, records=records)


@hookimpl
def register_benchmarks(register) -> None:  # noqa: ANN001
    """Register ``heldout-nll``."""
    register(BenchmarkSpec(
        name="heldout-nll",
        description="NLL per response token of held-out demonstrations from any dataset (teacher forcing)",
        paper="held-out log-likelihood (no paper; the standard language-modelling measure)",
        evaluate=evaluate, params=HeldoutParams, version="1",
        metrics=(MetricSpec("nll", lower_is_better=True, item="nll"),
                 MetricSpec("nll_sum", lower_is_better=True, item="nll_sum")),
    ))

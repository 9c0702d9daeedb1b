"""Speed benchmark (not a test): the harness's trainer and engine against bare hand-written loops.

``python -m harness.bench [--model tiny:small] [--steps 20] [--batch 8]`` prints, for SFT and DPO on a
fixed tiny model and batch, the harness's optimizer steps/s and those of a bare torch loop doing the
same math in the same process (the ratio is the figure of merit), the peak RSS, and generation
tokens/s of the ``hf`` engine against a bare KV-cache sampling loop.

The bare DPO loop is what a naive script does: a reference forward at every step. The harness computes
reference log-probs once per round, so its step is about one policy forward + backward. That saving
needs data that is seen more than once: DPO is measured twice, on ``steps * batch`` distinct pairs (one
epoch: both do the same number of reference forwards, so about 1x is the best possible) and on
``steps * batch / epochs`` pairs seen ``--epochs`` times (DPO recipes run 1-3 epochs; the didactic tasks
and self-play rounds revisit a small set for many steps), where the target applies.
Targets: SFT >= 0.95x the bare loop; DPO over several epochs >= 1.15x; hf generation >= 1.0x the bare
loop. Timings alternate harness and bare runs and keep the best of ``--repeats`` of each.
"""

from __future__ import annotations

import copy
import resource
import time
from typing import Any

import click
import torch
from tabulate import tabulate

from harness.context import TrainingData
from harness.data import Pair, Prompt, Sequence
from harness.engines.hf import HFEngine
from harness.lm import LM
from harness.models import load_model
from harness.plugins import load
from harness.train import TrainConfig, Trainer


def make_data(n: int, prompt_len: int, resp_len: int, vocab: int, seed: int = 0) -> tuple[list, list]:
    g = torch.Generator().manual_seed(seed)
    rand = lambda k: tuple(torch.randint(0, vocab, (k,), generator=g).tolist())  # noqa: E731
    prompts = [Prompt((257, *rand(prompt_len - 1))) for _ in range(n)]
    demos = [Sequence(p, rand(resp_len)) for p in prompts]
    pairs = [Pair(p, rand(resp_len), rand(resp_len)) for p in prompts]
    return demos, pairs


def bare_logps(model: Any, prompt_ids: torch.Tensor, resp_ids: torch.Tensor) -> torch.Tensor:
    """Summed response log-probs, the obvious way: full logits, log_softmax, gather."""
    ids = torch.cat([prompt_ids, resp_ids], 1)
    logits = model(input_ids=ids).logits[:, prompt_ids.shape[1] - 1 : -1].float()
    return torch.log_softmax(logits, -1).gather(-1, resp_ids[:, :, None]).squeeze(-1).sum(-1)


def bare_train(method: str, model: Any, demos: list, pairs: list, steps: int, batch: int, lr: float) -> float:
    """A hand-written loop; returns steps/s."""
    ref = copy.deepcopy(model).eval().requires_grad_(False) if method == "dpo" else None
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    t0 = time.perf_counter()
    for step in range(steps):
        idx = [(step * batch + i) % len(demos) for i in range(batch)]
        prompt = torch.tensor([demos[i].prompt.ids for i in idx])
        opt.zero_grad()
        if method == "sft":
            loss = -bare_logps(model, prompt, torch.tensor([demos[i].response for i in idx])).mean()
        else:
            both = torch.cat([torch.tensor([pairs[i].chosen for i in idx]), torch.tensor([pairs[i].rejected for i in idx])])
            pp = torch.cat([prompt, prompt])
            pi = bare_logps(model, pp, both)
            with torch.no_grad():
                rf = bare_logps(ref, pp, both)  # a reference forward every step
            h = pi - rf
            loss = -torch.nn.functional.logsigmoid(0.1 * (h[:batch] - h[batch:])).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return steps / (time.perf_counter() - t0)


def harness_train(method: str, host: Any, name: str, demos: list, pairs: list, steps: int, batch: int,
                  lr: float) -> float:
    loaded = load_model(name, seed=0)
    spec = host.registry.method(method)
    data = TrainingData(loader=lambda kind: demos if kind == "demonstrations" else pairs, reward_fn=None,
                        provides=frozenset({"demonstrations", "preferences"}))
    cfg = TrainConfig(rounds=1, steps=steps, batch_size=batch, lr=lr, warmup_ratio=0.0)
    trainer = Trainer(method=spec, method_params=spec.params(), cfg=cfg,
                      policy=LM(loaded.model, loaded.tokenizer), data=data, seed=0,
                      engine_factory=lambda m: None, progress=False)
    t0 = time.perf_counter()
    trainer.train_round(0)  # includes the round's reference pass, as it should
    return steps / (time.perf_counter() - t0)


@torch.no_grad()
def bare_generate(model: Any, prompts: torch.Tensor, new_tokens: int) -> int:
    """Greedy decoding with a KV cache, equal-length prompts (no padding): the fastest simple loop."""
    from transformers import DynamicCache

    model.eval()
    cache = DynamicCache()
    out = model(input_ids=prompts, past_key_values=cache, use_cache=True)
    tok = out.logits[:, -1].argmax(-1, keepdim=True)
    for _ in range(new_tokens - 1):
        out = model(input_ids=tok, past_key_values=out.past_key_values, use_cache=True)
        tok = out.logits[:, -1].argmax(-1, keepdim=True)
    return prompts.shape[0] * new_tokens


def gen_speed(name: str, batch: int, new_tokens: int, repeats: int) -> tuple[float, float]:
    """Best tokens/s of the hf engine and of the bare loop, alternating runs (equal-length prompts)."""
    loaded = load_model(name, seed=0)
    prompts = [Prompt((257, *range(1, 16))) for _ in range(batch)]
    engine = HFEngine(loaded.model, loaded.tokenizer, batch_size=batch)
    # The tiny random model rarely emits EOS; both loops decode the full length.
    engine.generate(prompts[:2], max_new_tokens=4)  # warm up
    bare_generate(loaded.model, torch.tensor([p.ids for p in prompts[:2]]), 4)
    ours = bare = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        outs = engine.generate(prompts, max_new_tokens=new_tokens)
        ours = max(ours, sum(len(c[0].ids) for c in outs) / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        n = bare_generate(loaded.model, torch.tensor([p.ids for p in prompts]), new_tokens)
        bare = max(bare, n / (time.perf_counter() - t0))
    return ours, bare


@click.command()
@click.option("--model", default="tiny:small", show_default=True)
@click.option("--steps", default=20, show_default=True)
@click.option("--batch", default=8, show_default=True)
@click.option("--prompt-len", default=48, show_default=True)
@click.option("--resp-len", default=64, show_default=True)
@click.option("--gen-batch", default=32, show_default=True)
@click.option("--new-tokens", default=64, show_default=True)
@click.option("--epochs", default=4, show_default=True,
              help="Passes over the data in the multi-epoch DPO measurement (steps * batch / epochs pairs).")
@click.option("--repeats", default=3, show_default=True, help="Best of this many timings each.")
def main(model: str, steps: int, batch: int, prompt_len: int, resp_len: int, gen_batch: int, new_tokens: int,
         epochs: int, repeats: int) -> None:
    """Harness vs bare loops: steps/s ratios for SFT and DPO, peak RSS, generation tokens/s."""
    if epochs < 1 or (steps * batch) % epochs:
        raise click.BadParameter(f"must be at least 1 and divide steps * batch = {steps * batch}", param_hint="--epochs")
    torch.manual_seed(0)
    host = load(env={"HARNESS_LOAD_PLUGINS": "sft,dpo,engines"})
    demos, pairs = make_data(steps * batch, prompt_len, resp_len, 256)
    rows = []
    cases = [("sft", "sft", 1, 0.95), ("dpo", "dpo, 1 epoch", 1, None), ("dpo", f"dpo, {epochs} epochs", epochs, 1.15)]
    for method, label, n_epochs, target in cases:
        n = steps * batch // n_epochs
        ours = bare = 0.0
        for _ in range(repeats):
            bare = max(bare, bare_train(method, load_model(model, seed=0).model, demos[:n], pairs[:n], steps, batch,
                                        1e-4))
            ours = max(ours, harness_train(method, host, model, demos[:n], pairs[:n], steps, batch, 1e-4))
        verdict = "" if target is None else ("ok" if ours / bare >= target else "below")
        rows.append([label, f"{ours:.2f}", f"{bare:.2f}", f"{ours / bare:.2f}x",
                     "(no reuse possible)" if target is None else f">= {target}x", verdict])
    ours_g, bare_g = gen_speed(model, gen_batch, new_tokens, repeats)
    rows.append(["generate (tok/s)", f"{ours_g:.0f}", f"{bare_g:.0f}", f"{ours_g / bare_g:.2f}x", ">= 1.0x",
                 "ok" if ours_g / bare_g >= 1.0 else "below"])
    click.echo(f"model {model}, batch {batch}, prompt {prompt_len} + response {resp_len} tokens, {steps} steps "
               f"(steps/s), torch threads {torch.get_num_threads()}")
    click.echo(tabulate(rows, headers=["what", "harness", "bare loop", "ratio", "target", ""]))
    click.echo(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()

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

Stages (on any device; the GPU report): ``python -m harness.bench --device cuda --dtype bfloat16 --model
random:smollm2-360m --json bench.json`` measures each stage of a round on its own, as NeMo-RL and verl count
it, in (prompt + response) tokens per second of stage time: generation (the ``hf`` engine, and transformers'
``generate`` on the same prompts), reference scoring, and training (optimizer steps of ``--method``), each
with its first call in the process apart from the warm figure; plus the one-off process costs (CUDA context,
:func:`harness.engines.hf.warm_up`, graph capture), step time, model FLOPs utilisation (6 N tokens for a
training step, 2 N for a forward, over the card's dense bf16 peak) and peak GPU memory per stage. ``random:``
presets are random-initialised Llamas of a real model's shape and vocabulary (nothing is downloaded).
``--json`` writes every figure. On the CPU the comparison table above runs first (``--no-compare`` skips
it); on CUDA it is skipped unless ``--compare`` is given.
"""

from __future__ import annotations

import copy
import json
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import click
import torch
from tabulate import tabulate

from harness.core.context import TrainingData
from harness.core.data import Pair, Prompt, Row, Sequence
from harness.core.plugins import load
from harness.engines import hf_static
from harness.engines.hf import HFEngine, warm_up
from harness.models.lm import LM
from harness.models.loading import load_model
from harness.models.logprobs import reference_logprobs
from harness.training.trainer import TrainConfig, Trainer

# Random-weight Llamas shaped like real models (real vocabulary size): GPU figures without a download.
PRESETS: dict[str, dict[str, int]] = {
    "toy": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                intermediate_size=128, vocab_size=1024),
    "smollm2-360m": dict(hidden_size=960, num_hidden_layers=32, num_attention_heads=15, num_key_value_heads=5,
                         intermediate_size=2560, vocab_size=49152),
    "smollm2-1.7b": dict(hidden_size=2048, num_hidden_layers=24, num_attention_heads=32, num_key_value_heads=32,
                         intermediate_size=8192, vocab_size=49152),
}
# Dense bf16 peak FLOP/s by card name (for MFU); unknown cards report no MFU.
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}


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
    model, tok, _ = build_bench_model(name, "cpu", "float32")
    spec = host.registry.method(method)
    data = TrainingData(loader=lambda kind: demos if kind == "demonstrations" else pairs, reward_fn=None,
                        provides=frozenset({"demonstrations", "preferences"}))
    cfg = TrainConfig(rounds=1, steps=steps, batch_size=batch, lr=lr, warmup_ratio=0.0)
    trainer = Trainer(method=spec, method_params=spec.params(), cfg=cfg,
                      policy=LM(model, tok), data=data, seed=0,
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
    # transformers >= 5.24 calls the argument `cache`; older versions `past_key_values`.
    kw = "cache" if "cache" in hf_static._params(model) else "past_key_values"
    out = model(input_ids=prompts, use_cache=True, **{kw: cache})
    tok = out.logits[:, -1].argmax(-1, keepdim=True)
    for _ in range(new_tokens - 1):
        out = model(input_ids=tok, use_cache=True, **{kw: cache})
        tok = out.logits[:, -1].argmax(-1, keepdim=True)
    return prompts.shape[0] * new_tokens


def gen_speed(name: str, batch: int, new_tokens: int, repeats: int) -> tuple[float, float]:
    """Best tokens/s of the hf engine and of the bare loop, alternating runs (equal-length prompts)."""
    model, tok, _ = build_bench_model(name, "cpu", "float32")
    prompts = [Prompt((257, *range(1, 16))) for _ in range(batch)]
    engine = HFEngine(model, tok, batch_size=batch)
    # The tiny random model rarely emits EOS; both loops decode the full length.
    engine.generate(prompts[:2], max_new_tokens=4)  # warm up
    bare_generate(model, torch.tensor([p.ids for p in prompts[:2]]), 4)
    ours = bare = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        outs = engine.generate(prompts, max_new_tokens=new_tokens)
        ours = max(ours, sum(len(c[0].ids) for c in outs) / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        n = bare_generate(model, torch.tensor([p.ids for p in prompts]), new_tokens)
        bare = max(bare, n / (time.perf_counter() - t0))
    return ours, bare


def build_bench_model(name: str, device: str, dtype: str, seed: int = 0) -> tuple[Any, Any, int]:
    """(model, tokenizer, vocab size): a ``random:<preset>`` Llama, or anything :func:`load_model` loads."""
    from harness.models import tiny
    from harness.models.loading import resolve_device, resolve_dtype

    if name.startswith("random:"):
        key = name.split(":", 1)[1]
        if key not in PRESETS:
            raise click.BadParameter(f"unknown preset '{key}'; use one of {', '.join(PRESETS)}", param_hint="--model")
        from transformers import LlamaConfig, LlamaForCausalLM

        torch.manual_seed(seed)
        cfg = LlamaConfig(**PRESETS[key], max_position_embeddings=4096, pad_token_id=0, bos_token_id=1,
                          eos_token_id=2, tie_word_embeddings=True)
        dev = resolve_device(device)
        with dev:  # initialised on the device: a 1.7B random init on the CPU takes tens of seconds
            model = LlamaForCausalLM(cfg)
        model = model.to(device=dev, dtype=resolve_dtype(dtype, dev))
        return model, tiny.build_tokenizer(), PRESETS[key]["vocab_size"]
    loaded = load_model(name, seed=seed, dtype=dtype, device=device)
    return loaded.model, loaded.tokenizer, int(loaded.model.config.vocab_size)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def stage_report(*, model_name: str, device: str, dtype: str, method: str, steps: int, batch: int,
                 prompt_len: int, resp_len: int, gen_batch: int, new_tokens: int, repeats: int,
                 gradient_checkpointing: bool, generate_baseline: bool = True) -> dict[str, Any]:
    """Each stage of a round timed on its own (see the module docstring); returns the JSON record."""
    from harness.models.loading import resolve_device

    dev = resolve_device(device)
    rec: dict[str, Any] = {"model": model_name, "device": str(dev), "dtype": dtype, "method": method,
                           "steps": steps, "batch": batch, "prompt_len": prompt_len, "resp_len": resp_len,
                           "gen_batch": gen_batch, "new_tokens": new_tokens,
                           "gradient_checkpointing": gradient_checkpointing}
    t0 = time.perf_counter()
    if dev.type == "cuda":
        torch.cuda.init()
        torch.empty(1, device=dev)
        _sync(dev)
    rec["process_cuda_context_s"] = time.perf_counter() - t0
    rec["process_warm_up_s"] = warm_up(dev)
    model, tok, vocab = build_bench_model(model_name, device, dtype)
    n_params = sum(p.numel() for p in model.parameters())
    rec["params"] = n_params
    peak = None
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
        rec["gpu"] = name
        peak = next((v for k, v in PEAK_FLOPS.items() if k in name), None)
    rec["peak_flops"] = peak

    def mfu(flops: float, seconds: float) -> float | None:
        return flops / seconds / peak if peak and seconds > 0 else None

    # -- generation --------------------------------------------------------------------------------
    model.generation_config.eos_token_id = None  # random weights: decode the full length, like generate below
    model.generation_config.pad_token_id = 0
    g = torch.Generator().manual_seed(1)
    prompt_ids = torch.randint(4, vocab, (gen_batch, prompt_len), generator=g)
    prompts = [Prompt(tuple(r)) for r in prompt_ids.tolist()]
    engine = HFEngine(model, tok, batch_size=gen_batch)
    # What a worker pays once before its first cell (graph capture and prefill kernels of this shape bucket).
    rec["process_engine_warm_s"] = engine.warm(prompt_len=prompt_len, max_new_tokens=new_tokens)

    def run_engine() -> tuple[int, float]:
        _sync(dev)
        t = time.perf_counter()
        outs = engine.generate(prompts, max_new_tokens=new_tokens)
        _sync(dev)
        return sum(len(c[0].ids) for c in outs), time.perf_counter() - t

    def run_generate() -> tuple[int, float]:
        x = prompt_ids.to(dev)
        _sync(dev)
        t = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=new_tokens,
                                 min_new_tokens=new_tokens, do_sample=False)
        _sync(dev)
        return (out.shape[1] - prompt_len) * gen_batch, time.perf_counter() - t

    _peak_reset(dev)
    n_new, secs = run_engine()
    rec["gen_first_call_s"] = secs
    rec["gen_first_call_decode_tok_s"] = n_new / secs
    rec["gen_graph_capture_s"] = getattr(hf_static._RUNNERS.get(model), "capture_s", 0.0)  # all, warm included
    warm, base = [], []
    for _ in range(repeats):
        warm.append(run_engine())
        if generate_baseline:
            base.append(run_generate())
    n_new, secs = min(warm, key=lambda x: x[1])
    rec["gen_new_tokens"] = n_new
    rec["gen_warm_s"] = secs
    rec["gen_decode_tok_s"] = n_new / secs
    rec["gen_tok_s"] = (n_new + gen_batch * prompt_len) / secs  # prompt + response tokens / stage time
    rec["gen_mfu"] = mfu(2 * n_params * (n_new + gen_batch * prompt_len), secs)
    rec["gen_first_over_warm"] = rec["gen_first_call_decode_tok_s"] / rec["gen_decode_tok_s"]
    runner = hf_static._RUNNERS.get(model)
    rec["gen_decoder"] = "static+graphs" if runner is not None and runner.graphs else (
        "static" if runner is not None else "dynamic")
    if runner is not None and runner.graph_error:
        rec["gen_graph_error"] = runner.graph_error
    del runner  # the static caches and graphs go with it (below), so training's peak memory is its own
    if base:
        n_b, secs_b = min(base, key=lambda x: x[1])
        rec["gen_hf_generate_decode_tok_s"] = n_b / secs_b
        rec["gen_vs_hf_generate"] = rec["gen_decode_tok_s"] / rec["gen_hf_generate_decode_tok_s"]
    rec["gen_peak_gib"] = _peak_gib(dev)
    hf_static.release(model)  # free the static caches before training
    if dev.type == "cuda":
        torch.cuda.empty_cache()

    # -- reference scoring -------------------------------------------------------------------------
    demos, pairs = make_data(steps * batch, prompt_len, resp_len, vocab)
    rows = [Row({"chosen": Sequence(p.prompt, p.chosen), "rejected": Sequence(p.prompt, p.rejected)}, {})
            for p in pairs]
    ref_tokens = sum(2 * (prompt_len + resp_len) for _ in rows)
    model.eval()
    times = []
    for _ in range(1 + repeats):
        _peak_reset(dev)
        _sync(dev)
        t = time.perf_counter()
        reference_logprobs(model, rows, pad_id=0, batch_size=2 * batch)
        _sync(dev)
        times.append(time.perf_counter() - t)
    rec["ref_first_call_s"] = times[0]
    rec["ref_warm_s"] = min(times[1:])
    rec["ref_tok_s"] = ref_tokens / rec["ref_warm_s"]
    rec["ref_first_call_tok_s"] = ref_tokens / times[0]
    rec["ref_mfu"] = mfu(2 * n_params * ref_tokens, rec["ref_warm_s"])
    rec["ref_peak_gib"] = _peak_gib(dev)

    # -- training ----------------------------------------------------------------------------------
    host = load(env={"HARNESS_LOAD_PLUGINS": "sft,dpo,engines"})
    spec = host.registry.method(method)
    data = TrainingData(loader=lambda kind: demos if kind == "demonstrations" else pairs, reward_fn=None,
                        provides=frozenset({"demonstrations", "preferences"}))
    cfg = TrainConfig(rounds=1, steps=steps, batch_size=batch, lr=1e-6, warmup_ratio=0.0,
                      ref_batch_size=2 * batch, gradient_checkpointing=gradient_checkpointing)
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    _peak_reset(dev)
    trainer = Trainer(method=spec, method_params=spec.params(), cfg=cfg, policy=LM(model, tok), data=data, seed=0,
                      engine_factory=lambda m: None, progress=False)
    _sync(dev)
    t = time.perf_counter()
    records = trainer.train_round(0)
    _sync(dev)
    rec["train_round_s"] = time.perf_counter() - t
    step_s = [r.metrics["step_s"] for r in records]
    per_row = (2 if method == "dpo" else 1) * (prompt_len + resp_len)
    rec["train_first_step_s"] = step_s[0]
    warm_steps = step_s[1:] or step_s
    rec["train_step_s"] = sum(warm_steps) / len(warm_steps)
    rec["train_tok_s"] = batch * per_row / rec["train_step_s"]
    rec["train_mfu"] = mfu(6 * n_params * batch * per_row, rec["train_step_s"])
    rec["train_peak_gib"] = _peak_gib(dev)
    return rec


def print_stages(rec: dict[str, Any]) -> None:
    def f(v: Any, spec: str = ".0f") -> str:
        return "-" if v is None else format(v, spec)

    rows = [
        ["generation (hf engine)", f(rec["gen_tok_s"]), f(rec["gen_decode_tok_s"]), f(rec["gen_first_call_decode_tok_s"]),
         f(rec.get("gen_mfu"), ".3f"), f(rec.get("gen_peak_gib"), ".1f")],
        ["generation (transformers generate)", "-", f(rec.get("gen_hf_generate_decode_tok_s")), "-", "-", "-"],
        ["reference scoring", f(rec["ref_tok_s"]), "-", f(rec["ref_first_call_tok_s"]), f(rec.get("ref_mfu"), ".3f"),
         f(rec.get("ref_peak_gib"), ".1f")],
        [f"training ({rec['method']})", f(rec["train_tok_s"]), "-", "-", f(rec.get("train_mfu"), ".3f"),
         f(rec.get("train_peak_gib"), ".1f")],
    ]
    click.echo(f"{rec['model']} on {rec.get('gpu', rec['device'])}, {rec['dtype']}, decoder {rec['gen_decoder']}, "
               f"gradient checkpointing {'on' if rec['gradient_checkpointing'] else 'off'}")
    click.echo(tabulate(rows, headers=["stage", "tok/s (prompt+resp)", "decode tok/s", "first call", "MFU",
                                       "peak GiB"]))
    ratio = rec.get("gen_vs_hf_generate")
    click.echo(f"decode vs generate {f(ratio, '.2f')}x; first call / warm {rec['gen_first_over_warm']:.2f} "
               f"(graph capture {rec['gen_graph_capture_s']:.2f} s, CUDA context {rec['process_cuda_context_s']:.2f} s, "
               f"warm_up {rec['process_warm_up_s']:.2f} s, engine.warm {rec['process_engine_warm_s']:.2f} s); train step {rec['train_step_s'] * 1000:.0f} ms "
               f"(first {rec['train_first_step_s'] * 1000:.0f} ms)")


@click.command()
@click.option("--model", default="tiny:small", show_default=True,
              help="A model name, or random:<preset> (" + ", ".join(PRESETS) + ").")
@click.option("--device", default="cpu", show_default=True)
@click.option("--dtype", default="float32", show_default=True)
@click.option("--method", type=click.Choice(["dpo", "sft"]), default="dpo", show_default=True,
              help="Trained in the stage report.")
@click.option("--gradient-checkpointing/--no-gradient-checkpointing", default=False, show_default=True)
@click.option("--compare/--no-compare", default=None,
              help="The harness-vs-bare-loop table (default: on the CPU only).")
@click.option("--stages/--no-stages", default=None, help="The per-stage report (default: with --json or on CUDA).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write every figure here.")
@click.option("--steps", default=20, show_default=True)
@click.option("--batch", default=8, show_default=True)
@click.option("--prompt-len", default=48, show_default=True)
@click.option("--resp-len", default=64, show_default=True)
@click.option("--gen-batch", default=32, show_default=True)
@click.option("--new-tokens", default=64, show_default=True)
@click.option("--epochs", default=4, show_default=True,
              help="Passes over the data in the multi-epoch DPO measurement (steps * batch / epochs pairs).")
@click.option("--repeats", default=3, show_default=True, help="Best of this many timings each.")
def main(model: str, device: str, dtype: str, method: str, gradient_checkpointing: bool, compare: bool | None,
         stages: bool | None, json_path: Path | None, steps: int, batch: int, prompt_len: int, resp_len: int,
         gen_batch: int, new_tokens: int, epochs: int, repeats: int) -> None:
    """Harness vs bare loops (steps/s ratios, peak RSS, generation tokens/s) and the per-stage report."""
    if epochs < 1 or (steps * batch) % epochs:
        raise click.BadParameter(f"must be at least 1 and divide steps * batch = {steps * batch}", param_hint="--epochs")
    on_cuda = device.startswith("cuda")
    record: dict[str, Any] = {"command": " ".join(["python -m harness.bench", *sys.argv[1:]]),
                              "torch": torch.__version__, "python": platform.python_version()}
    try:
        import transformers

        record["transformers"] = transformers.__version__
    except ImportError:  # pragma: no cover
        pass
    if stages if stages is not None else (on_cuda or json_path is not None):
        record["stages"] = stage_report(model_name=model, device=device, dtype=dtype, method=method, steps=steps,
                                        batch=batch, prompt_len=prompt_len, resp_len=resp_len, gen_batch=gen_batch,
                                        new_tokens=new_tokens, repeats=repeats,
                                        gradient_checkpointing=gradient_checkpointing)
        print_stages(record["stages"])
        if json_path is not None:
            json_path.write_text(json.dumps(record, indent=1))
    if compare if compare is not None else not on_cuda:
        record["compare"] = compare_table(model, steps, batch, prompt_len, resp_len, gen_batch, new_tokens, epochs,
                                          repeats)
    if json_path is not None:
        json_path.write_text(json.dumps(record, indent=1))
        click.echo(f"wrote {json_path}")


def compare_table(model: str, steps: int, batch: int, prompt_len: int, resp_len: int, gen_batch: int,
                  new_tokens: int, epochs: int, repeats: int) -> dict[str, float]:
    """The CPU comparison: harness vs bare loops (see the module docstring); returns the ratios."""
    torch.manual_seed(0)
    ratios: dict[str, float] = {}
    host = load(env={"HARNESS_LOAD_PLUGINS": "sft,dpo,engines"})
    demos, pairs = make_data(steps * batch, prompt_len, resp_len, 256)
    rows = []
    cases = [("sft", "sft", 1, 0.95), ("dpo", "dpo, 1 epoch", 1, None), ("dpo", f"dpo, {epochs} epochs", epochs, 1.15)]
    for method, label, n_epochs, target in cases:
        n = steps * batch // n_epochs
        ours = bare = 0.0
        for _ in range(repeats):
            bare = max(bare, bare_train(method, build_bench_model(model, "cpu", "float32")[0], demos[:n], pairs[:n], steps, batch,
                                        1e-4))
            ours = max(ours, harness_train(method, host, model, demos[:n], pairs[:n], steps, batch, 1e-4))
        verdict = "" if target is None else ("ok" if ours / bare >= target else "below")
        ratios[label] = ours / bare
        rows.append([label, f"{ours:.2f}", f"{bare:.2f}", f"{ours / bare:.2f}x",
                     "(no reuse possible)" if target is None else f">= {target}x", verdict])
    ours_g, bare_g = gen_speed(model, gen_batch, new_tokens, repeats)
    ratios["generate"] = ours_g / bare_g
    rows.append(["generate (tok/s)", f"{ours_g:.0f}", f"{bare_g:.0f}", f"{ours_g / bare_g:.2f}x", ">= 1.0x",
                 "ok" if ours_g / bare_g >= 1.0 else "below"])
    click.echo(f"model {model}, batch {batch}, prompt {prompt_len} + response {resp_len} tokens, {steps} steps "
               f"(steps/s), torch threads {torch.get_num_threads()}")
    click.echo(tabulate(rows, headers=["what", "harness", "bare loop", "ratio", "target", ""]))
    click.echo(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    return ratios


if __name__ == "__main__":
    main()

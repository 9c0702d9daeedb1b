#!/usr/bin/env python3
"""(Adapted copy of ../shared/tools/gpu-anchors.py: --harness-gc, --skip-gen, warm_up before the engine's first
call, models initialised on the device, the decoder used and the ratios in the JSON.)

GPU anchor check (a measurement tool, not product code): the harness's trainer and hf engine against a bare
torch loop and Hugging Face TRL / generate, on one GPU, same model and data, in one process.

Model: a random-init Llama shaped like SmolLM2-360M (hidden 960, 32 layers, 15 heads, 5 kv heads, MLP 2560,
vocab 49152), bf16 weights, on cuda. Workload: batch B pairs of prompt P + response R tokens.

    python gpu-anchors.py --size 360m --steps 20 --batch 8 --prompt 128 --resp 256 --out results.json
    python gpu-anchors.py --size 1.7b --steps 10 --cases dpo:1 --new 128 --out results.json
    python gpu-anchors.py --size toy --device cpu --steps 4 --batch 2 --prompt 8 --resp 16 --new 8   # CPU dry run

On the lent GPU machine ../shared does not travel: copy this file into an ignored folder of the checkout and carry
it, with wheels of trl, datasets, dill and multiprocess for Python 3.12 (see the device tool's README on carrying
wheels); the project itself installs there with `pip install --no-deps --no-build-isolation .` (its other
dependencies are already in that machine's image, except gguf, which only GGUF loading needs). --skip-trl runs
without TRL. Its harness parts use harness.training.trainer.Trainer, harness.models.lm.LM and harness.engines.hf.HFEngine as they
were when it was written: adapt them if those change.
"""
from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
import traceback

import torch
import torch.nn.functional as F

SIZES = {
    "toy": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                intermediate_size=128, vocab_size=1024),
    "1.7b": dict(hidden_size=2048, num_hidden_layers=24, num_attention_heads=32, num_key_value_heads=32,
                 intermediate_size=8192, vocab_size=49152),
    "360m": dict(hidden_size=960, num_hidden_layers=32, num_attention_heads=15, num_key_value_heads=5,
                 intermediate_size=2560, vocab_size=49152),
}


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def build(size, dev, seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(seed)
    cfg = LlamaConfig(**SIZES[size], max_position_embeddings=2048, pad_token_id=0, bos_token_id=1,
                      eos_token_id=2, tie_word_embeddings=True)
    with dev:  # initialise on the device: a 1.7B random init on the CPU takes tens of seconds
        m = LlamaForCausalLM(cfg)
    m = m.to(device=dev, dtype=torch.bfloat16 if dev.type == "cuda" else torch.float32)
    return m


def word_tokenizer(vocab):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import PreTrainedTokenizerFast
    v = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3}
    for i in range(4, vocab):
        v[f"w{i}"] = i
    tk = Tokenizer(WordLevel(vocab=v, unk_token="<unk>"))
    tk.pre_tokenizer = WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>")


def data(n, P, R, vocab, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda k: tuple(torch.randint(4, vocab, (k,), generator=g).tolist())  # noqa: E731
    return [(r(P), r(R), r(R)) for _ in range(n)]


def bare(method, model, rows, steps, B, dev):
    ref = copy.deepcopy(model).eval().requires_grad_(False) if method == "dpo" else None
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    model.train()

    def logps(m, p, r):
        ids = torch.cat([p, r], 1)
        logits = m(input_ids=ids).logits[:, p.shape[1] - 1:-1].float()
        return torch.log_softmax(logits, -1).gather(-1, r[:, :, None]).squeeze(-1).sum(-1)

    times = []
    for s in range(steps):
        sync(dev)
        t0 = time.perf_counter()
        idx = [(s * B + i) % len(rows) for i in range(B)]
        p = torch.tensor([rows[i][0] for i in idx], device=dev)
        c = torch.tensor([rows[i][1] for i in idx], device=dev)
        opt.zero_grad(set_to_none=True)
        if method == "sft":
            loss = -logps(model, p, c).mean()
        else:
            rj = torch.tensor([rows[i][2] for i in idx], device=dev)
            pp, both = torch.cat([p, p]), torch.cat([c, rj])
            pi = logps(model, pp, both)
            with torch.no_grad():
                rf = logps(ref, pp, both)
            h = pi - rf
            loss = -F.logsigmoid(0.1 * (h[:B] - h[B:])).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sync(dev)
        times.append(time.perf_counter() - t0)
    return times


def harness_round(method, model, rows, steps, B, dev, gc=False):
    from harness.core.context import TrainingData
    from harness.core.data import Pair, Prompt, Sequence
    from harness.core.plugins import load
    from harness.models import tiny
    from harness.models.lm import LM
    from harness.training.trainer import TrainConfig, Trainer
    host = load(env={"HARNESS_LOAD_PLUGINS": "sft,dpo,engines"})
    spec = host.registry.method(method)
    prompts = [Prompt(p) for p, _, _ in rows]
    demos = [Sequence(pr, c) for pr, (_, c, _) in zip(prompts, rows, strict=True)]
    pairs = [Pair(pr, c, r) for pr, (_, c, r) in zip(prompts, rows, strict=True)]
    td = TrainingData(loader=lambda kind: demos if kind == "demonstrations" else pairs, reward_fn=None,
                      provides=frozenset({"demonstrations", "preferences"}))
    cfg = TrainConfig(rounds=1, steps=steps, batch_size=B, lr=1e-6, warmup_ratio=0.0, ref_batch_size=2 * B,
                      gradient_checkpointing=gc)
    tr = Trainer(method=spec, method_params=spec.params(), cfg=cfg, policy=LM(model, tiny.build_tokenizer()),
                 data=td, seed=0, engine_factory=lambda m: None, progress=False)
    sync(dev)
    t0 = time.perf_counter()
    tr.train_round(0)
    sync(dev)
    return time.perf_counter() - t0


def trl_round(method, model, rows, steps, B, dev, vocab, gc):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer
    tok = word_tokenizer(vocab)
    txt = lambda ids: " ".join(f"w{i}" for i in ids)  # noqa: E731
    common = dict(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=B, max_steps=steps,
                  bf16=dev.type == "cuda", use_cpu=dev.type == "cpu", report_to="none", save_strategy="no",
                  logging_steps=1000, learning_rate=1e-6, gradient_checkpointing=gc, seed=0,
                  max_length=None)
    if method == "dpo":
        ds = Dataset.from_list([{"prompt": txt(p), "chosen": " " + txt(c), "rejected": " " + txt(r)}
                                for p, c, r in rows])
        ref = copy.deepcopy(model).eval().requires_grad_(False)
        t = DPOTrainer(model=model, ref_model=ref, args=DPOConfig(**common), train_dataset=ds, processing_class=tok)
    else:
        ds = Dataset.from_list([{"prompt": txt(p), "completion": " " + txt(c)} for p, c, _ in rows])
        t = SFTTrainer(model=model, args=SFTConfig(**common), train_dataset=ds, processing_class=tok)
    sync(dev)
    t0 = time.perf_counter()
    out = t.train()
    sync(dev)
    return time.perf_counter() - t0, out.metrics.get("train_runtime")


def gen_bench(model, dev, batch, P, new, vocab, engine_warm=False):
    from harness.core.data import Prompt
    from harness.engines.hf import HFEngine, warm_up
    from harness.models import tiny
    model.eval()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(4, vocab, (batch, P), generator=g)
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    res = {}
    eng = HFEngine(model, tiny.build_tokenizer(), batch_size=batch)
    prompts = [Prompt(tuple(r)) for r in ids.tolist()]
    x = ids.to(dev)

    def ours():
        outs = eng.generate(prompts, max_new_tokens=new)
        return sum(len(c[0].ids) for c in outs)

    def theirs():
        out = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=new, min_new_tokens=new,
                             do_sample=False)
        return (out.shape[1] - P) * batch

    def timed(fn):
        sync(dev)
        t0 = time.perf_counter()
        n = fn()
        sync(dev)
        return n / (time.perf_counter() - t0)

    # The first full-size call in a process pays CUDA/cuBLAS/cuDNN set-up (about 2x slower on an H100): report it
    # apart, then alternate warm runs so neither side inherits the other's warm-up.
    res["warm_up_s"] = warm_up(dev)  # the once-per-process hook a worker calls before its first cell
    if engine_warm:  # the engine's own once-per-worker warm-up (graph of this shape bucket, prefill kernels)
        res["engine_warm_s"] = eng.warm(prompt_len=P, max_new_tokens=new)
    with torch.inference_mode():
        res["harness_hf_engine_first_call_tok_s"] = timed(ours)
        from harness.engines import hf_static
        runner = hf_static._RUNNERS.get(model)
        res["harness_decoder"] = "dynamic" if runner is None else ("static+graphs" if runner.graphs else "static")
        res["harness_graph_capture_s"] = getattr(runner, "capture_s", None)
        res["harness_graph_error"] = getattr(runner, "graph_error", None)
        res["hf_generate_after_tok_s"] = timed(theirs)
        warm_ours, warm_theirs = [], []
        for _ in range(2):
            warm_ours.append(timed(ours))
            warm_theirs.append(timed(theirs))
    res["harness_hf_engine_tok_s"] = max(warm_ours)
    res["hf_generate_tok_s"] = max(warm_theirs)
    res["warm_ratio_vs_generate"] = res["harness_hf_engine_tok_s"] / res["hf_generate_tok_s"]
    res["first_over_warm"] = res["harness_hf_engine_first_call_tok_s"] / res["harness_hf_engine_tok_s"]
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="360m")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--resp", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--gen-batch", type=int, default=64)
    ap.add_argument("--new", type=int, default=256)
    ap.add_argument("--skip-trl", action="store_true")
    ap.add_argument("--skip-gen", action="store_true")
    ap.add_argument("--engine-warm", action="store_true", help="call HFEngine.warm before the first timed call")
    ap.add_argument("--harness-gc", action="store_true", help="also run the harness with gradient checkpointing on")
    ap.add_argument("--cases", default="sft:1,dpo:1,dpo:E", help="method:epochs list; E = --epochs")
    ap.add_argument("--out", default="gpu_bench.json")
    a = ap.parse_args()
    dev = torch.device(a.device)
    vocab = SIZES[a.size]["vocab_size"]
    res = {"args": vars(a), "torch": torch.__version__}
    try:
        import transformers
        res["transformers"] = transformers.__version__
        if dev.type == "cuda":
            res["gpu"] = torch.cuda.get_device_name(0)
    except Exception as e:  # noqa: BLE001
        res["env_error"] = repr(e)
    n_all = a.steps * a.batch
    cases = [(c.split(":")[0], a.epochs if c.split(":")[1] == "E" else int(c.split(":")[1]))
             for c in a.cases.split(",") if c]

    def save():
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)

    for method, ep in cases:
        rows = data(n_all // ep, a.prompt, a.resp, vocab)
        key = f"{method}_ep{ep}"
        r = res.setdefault(key, {})
        for impl in ("bare", "harness", "harness_gc_on", "trl_gc_off", "trl_gc_on"):
            if impl.startswith("trl") and (a.skip_trl or ep != 1):
                continue
            if impl == "harness_gc_on" and not a.harness_gc:
                continue
            try:
                model = build(a.size, dev)
                if dev.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                if impl == "bare":
                    ts = bare(method, model, rows, a.steps, a.batch, dev)
                    r["bare_s"] = sum(ts)
                    r["bare_first_step_s"] = ts[0]
                    r["bare_after_first_s"] = sum(ts[1:])
                elif impl.startswith("harness"):
                    r[impl + "_s"] = harness_round(method, model, rows, a.steps, a.batch, dev, gc=impl.endswith("on"))
                else:
                    r[impl + "_s"], r[impl + "_runtime"] = trl_round(method, model, rows, a.steps, a.batch, dev,
                                                                     vocab, impl.endswith("on"))
                if dev.type == "cuda":
                    r[impl + "_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
            except Exception as e:  # noqa: BLE001
                r[impl + "_error"] = "".join(traceback.format_exception_only(type(e), e))[-600:]
                traceback.print_exc()
            del model
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            save()
            print(key, impl, {k: v for k, v in r.items() if k.startswith(impl)}, flush=True)
    try:
        if not a.skip_gen:
            model = build(a.size, dev)
            res["gen"] = gen_bench(model, dev, a.gen_batch, 32, a.new, vocab, engine_warm=a.engine_warm)
    except Exception as e:  # noqa: BLE001
        res["gen_error"] = repr(e)[-600:]
        traceback.print_exc()
    save()
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()

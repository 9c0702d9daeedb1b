"""Same outputs on the device: the hf engine's static decoder (CUDA graphs on CUDA) against its dynamic decoder
and transformers' ``generate`` on a tiny float32 model, greedy, with padding, EOS, pruning and a seeded sample.

    python scripts/gpu_check.py --device cuda --out check.json
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

import torch

from harness.core.data import Prompt
from harness.engines import hf_static
from harness.engines.hf import HFEngine
from harness.models.loading import load_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default="gpu_check.json")
    a = ap.parse_args()
    loaded = load_model("tiny:nano", seed=0, device=a.device)
    model, tok = loaded.model, loaded.tokenizer
    g = torch.Generator().manual_seed(1)
    lens = torch.randint(1, 20, (13,), generator=g).tolist()
    prompts = [Prompt((257, *torch.randint(0, 250, (k,), generator=g).tolist())) for k in lens]
    res: dict = {}
    model.generation_config.eos_token_id = None
    static = HFEngine(model, tok, batch_size=16, decoder="static").generate(prompts, max_new_tokens=40)
    runner = hf_static._RUNNERS.get(model)
    res["graphs"] = bool(runner and runner.graphs)
    res["graph_error"] = getattr(runner, "graph_error", None)
    dynamic = HFEngine(model, tok, batch_size=16, decoder="dynamic").generate(prompts, max_new_tokens=40)
    res["greedy_static_eq_dynamic"] = static == dynamic
    same = 0
    for p, c in zip(prompts, static, strict=True):
        x = torch.tensor([p.ids], device=model.device)
        ref = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=40, min_new_tokens=40,
                             do_sample=False, pad_token_id=0)
        same += c[0].ids == tuple(ref[0, x.shape[1]:].tolist())
    res["greedy_static_eq_generate_rows"] = f"{same}/{len(prompts)}"
    common = [t for t, _ in Counter(t for c in dynamic for t in c[0].ids).most_common(5)]
    model.generation_config.eos_token_id = common
    static = HFEngine(model, tok, batch_size=16, decoder="static").generate(prompts, max_new_tokens=40)
    dynamic = HFEngine(model, tok, batch_size=16, decoder="dynamic").generate(prompts, max_new_tokens=40)
    res["eos_static_eq_dynamic"] = static == dynamic
    res["eos_stopped_rows"] = sum(c[0].finish_reason == "stop" for c in static)
    res["states"] = [list(s) for s in hf_static.cache_states(model)]
    eng = HFEngine(model, tok, batch_size=16, decoder="static")
    kw = dict(n=3, temperature=1.0, top_p=0.9, max_new_tokens=16)
    res["sampling_seeded"] = eng.generate(prompts, seed=5, **kw) == eng.generate(prompts, seed=5, **kw)
    print(json.dumps(res, indent=1))
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()

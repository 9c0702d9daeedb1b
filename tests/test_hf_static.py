"""The hf engine's static-cache decoder (the CUDA-graph path, run eagerly on the CPU) against transformers'
``generate`` and the dynamic decoder: same greedy ids, same stops and EOS handling, seeded sampling."""

from __future__ import annotations

import warnings
from collections import Counter

import pytest
import torch

from harness.core.data import Prompt
from harness.core.errors import HarnessError
from harness.engines import hf_static
from harness.engines.hf import HFEngine


def random_prompts(n: int, seed: int = 1, longest: int = 20) -> list[Prompt]:
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(1, longest, (n,), generator=g).tolist()
    return [Prompt((257, *torch.randint(0, 250, (k,), generator=g).tolist())) for k in lens]


def test_static_greedy_equals_transformers_generate(tiny):
    model, tok = tiny.model, tiny.tokenizer
    model.generation_config.eos_token_id = None  # decode the full length, as generate(min_new_tokens=) does
    prompts = random_prompts(5)
    outs = HFEngine(model, tok, batch_size=8, decoder="static").generate(prompts, max_new_tokens=24)
    assert hf_static.cache_states(model)  # the static decoder ran (no silent fall-back to the dynamic one)
    for p, c in zip(prompts, outs, strict=True):
        x = torch.tensor([p.ids])
        ref = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=24, min_new_tokens=24,
                             do_sample=False, pad_token_id=0)
        assert c[0].ids == tuple(ref[0, x.shape[1]:].tolist())
        assert c[0].finish_reason == "length"


def test_static_equals_dynamic_with_eos_stops_and_pruning(tiny):
    model, tok = tiny.model, tiny.tokenizer
    prompts = random_prompts(13)
    free = HFEngine(model, tok, batch_size=16, decoder="dynamic").generate(prompts, max_new_tokens=40)
    common = [t for t, _ in Counter(t for c in free for t in c[0].ids).most_common(6)]
    # EOS = frequent tokens: most rows stop early, so the static decoder moves the live ones to a smaller bucket.
    model.generation_config.eos_token_id = common[:5]
    stop = [tok.decode(common[5:6])]
    for kwargs in ({}, {"stop": stop}):
        static = HFEngine(model, tok, batch_size=16, decoder="static").generate(prompts, max_new_tokens=40, **kwargs)
        dynamic = HFEngine(model, tok, batch_size=16, decoder="dynamic").generate(prompts, max_new_tokens=40,
                                                                                   **kwargs)
        assert static == dynamic
        reasons = Counter(c[0].finish_reason for c in static)
        assert reasons["stop"] >= 6 and reasons["length"] >= 1  # both kinds of ending were exercised
    assert (8, 128) in hf_static.cache_states(model)  # finished rows were pruned into the 8-row bucket


def test_static_sampling_is_seeded(tiny):
    model, tok = tiny.model, tiny.tokenizer
    prompts = random_prompts(3)
    eng = HFEngine(model, tok, batch_size=8, decoder="static")
    kw = dict(n=3, temperature=1.0, top_p=0.9, max_new_tokens=16)
    a, b = eng.generate(prompts, seed=7, **kw), eng.generate(prompts, seed=7, **kw)
    c = eng.generate(prompts, seed=8, **kw)
    assert a == b and a != c
    assert len({cs.ids for cs in a[0]}) > 1  # the n samples of a prompt differ


def test_dynamic_path_uses_the_current_cache_api(tiny):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        HFEngine(tiny.model, tiny.tokenizer, decoder="dynamic").generate(random_prompts(3), max_new_tokens=6)
        HFEngine(tiny.model, tiny.tokenizer, decoder="static").generate(random_prompts(3), max_new_tokens=6)
    assert not [w for w in caught if "past_key_values" in str(w.message) or "legacy" in str(w.message).lower()]


def test_auto_is_dynamic_on_cpu_and_bad_decoder_is_one_clear_error(tiny):
    HFEngine(tiny.model, tiny.tokenizer).generate(random_prompts(2), max_new_tokens=4)
    assert hf_static.cache_states(tiny.model) == []
    with pytest.raises(HarnessError, match="decoder must be auto, static or dynamic"):
        HFEngine(tiny.model, tiny.tokenizer, decoder="fast")


def test_buckets():
    assert [hf_static.batch_bucket(n) for n in (1, 2, 3, 5, 64, 65)] == [1, 2, 4, 8, 64, 128]
    assert [hf_static.length_bucket(n) for n in (1, 128, 129)] == [128, 128, 256]
    assert hf_static.warm_up("cpu") == 0.0


def test_static_state_does_not_keep_the_model_alive():
    import gc
    import weakref

    from harness.models.loading import load_model

    loaded = load_model("tiny:nano", seed=0)
    model = loaded.model
    HFEngine(model, loaded.tokenizer, decoder="static").generate(random_prompts(2), max_new_tokens=3)
    assert hf_static.cache_states(model)
    ref = weakref.ref(model)
    del model, loaded
    gc.collect()
    assert ref() is None  # a sweep worker running many cells does not pile up models and their caches

"""The log-prob engine against a one-example-at-a-time reference."""

from __future__ import annotations

import torch

from harness.core.data import Prompt, Row, Sequence
from harness.models.logprobs import batch_logprobs, reference_logprobs, sequence_logprobs


def reference_one(model, seq: Sequence) -> list[float]:
    """Score one sequence alone, with no padding and the full logits: the obvious way."""
    ids = torch.tensor([list(seq.prompt.ids) + list(seq.response)])
    logits = model(input_ids=ids).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    p = len(seq.prompt.ids)
    return [logp[p + j - 1, tok].item() for j, tok in enumerate(seq.response)]


def seqs_of(tok):
    enc = lambda t: tuple(tok.encode(t, add_special_tokens=False))  # noqa: E731
    return [
        Sequence(Prompt((257, *enc("short"))), enc("a much longer response here")),
        Sequence(Prompt((257, *enc("a considerably longer prompt than the others"))), enc("ok")),
        Sequence(Prompt((257,)), enc("from BOS only")),
        Sequence(Prompt((257, *enc("empty response"))), ()),
    ]


def test_batched_equals_one_at_a_time(tiny):
    model = tiny.model.eval()
    seqs = seqs_of(tiny.tokenizer)
    with torch.no_grad():
        out = sequence_logprobs(model, seqs, pad_id=256)
    for i, s in enumerate(seqs):
        ref = reference_one(model, s)
        got = out.token_logps[i, : len(s.response)].tolist()
        assert torch.allclose(torch.tensor(got), torch.tensor(ref), atol=1e-5) if ref else got == []
        assert out.mask[i].sum().item() == len(s.response)
        assert abs(out.sum()[i].item() - sum(ref)) < 1e-4
    assert out.sum()[3].item() == 0.0 and out.mean()[3].item() == 0.0  # fully masked row


def test_roles_in_one_forward_match_separate_calls(tiny):
    model = tiny.model.eval()
    seqs = seqs_of(tiny.tokenizer)
    rows = [Row({"chosen": seqs[0], "rejected": seqs[1]}, {"reward": 1.0}),
            Row({"chosen": seqs[2], "rejected": seqs[0]}, {"reward": 0.0})]
    calls = []
    handle = model.get_decoder().register_forward_hook(lambda *a: calls.append(1))  # the transformer body
    with torch.no_grad():
        batch = batch_logprobs(model, rows, pad_id=256)
    handle.remove()
    assert len(calls) == 1  # chosen and rejected went through one concatenated forward
    for role, idx in (("chosen", [0, 2]), ("rejected", [1, 0])):
        for b, i in enumerate(idx):
            assert abs(batch.logps[role][b].item() - sum(reference_one(model, seqs[i]))) < 1e-4
    assert batch.values["reward"].tolist() == [1.0, 0.0]
    ref = reference_logprobs(model, rows, pad_id=256)
    with torch.no_grad():
        batch = batch_logprobs(model, rows, pad_id=256, ref=ref)
    assert torch.allclose(batch.log_ratio("chosen"), torch.zeros(2), atol=1e-5)


def test_gradients_flow_and_hidden_states_align(tiny):
    model = tiny.model
    seqs = seqs_of(tiny.tokenizer)[:2]
    out = sequence_logprobs(model, seqs, pad_id=256, with_hidden=True, with_logits=True)
    out.sum().sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    # The hidden state at response position j, projected by the LM head, gives the logits used there.
    head = model.get_output_embeddings()
    proj = head(out.hidden)
    assert torch.allclose(proj.float(), out.logits, atol=1e-4)


def test_chunked_head_logps_match_full_log_softmax_values_and_grads(monkeypatch):
    import harness.models.logprobs as lp

    monkeypatch.setattr(lp, "_SMALL_LOGITS", 0)  # force chunks ...
    monkeypatch.setattr(lp, "_CHUNK_ELEMENTS", 3 * 50)  # ... of 3 rows
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 50, bias=False)
    h = torch.randn(10, 8, requires_grad=True)
    t = torch.randint(0, 50, (10,))
    got = lp.chunked_token_logps(h, head, t)
    want = torch.log_softmax(head(h), -1).gather(-1, t[:, None]).squeeze(-1)
    assert torch.allclose(got, want, atol=1e-6)
    g_got = torch.autograd.grad(got.sum(), [h, head.weight])
    g_want = torch.autograd.grad(want.sum(), [h, head.weight])
    for a, b in zip(g_got, g_want, strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_split_head_path_equals_full_logits_path_with_grads(tiny):
    """The decoder + chunked head path (default) against the logits_to_keep path (with_logits forces it)."""
    model = tiny.model.train()
    seqs = seqs_of(tiny.tokenizer)
    fast = sequence_logprobs(model, seqs, pad_id=256)
    g_fast = torch.autograd.grad(fast.sum().sum(), list(model.parameters()), allow_unused=True)
    full = sequence_logprobs(model, seqs, pad_id=256, with_logits=True)
    g_full = torch.autograd.grad(full.sum().sum(), list(model.parameters()), allow_unused=True)
    assert torch.allclose(fast.token_logps, full.token_logps, atol=1e-5)
    assert torch.equal(fast.mask, full.mask)
    for a, b in zip(g_fast, g_full, strict=True):
        assert (a is None and b is None) or torch.allclose(a, b, atol=1e-5)

"""The log-prob engine on a position-sensitive model (GPT-2's learned absolute positions, where a wrong
position id changes every log-prob, unlike a rotary model's relative ones), and its check that a model
honoured ``logits_to_keep``."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from harness.core.data import Prompt, Sequence
from harness.models.logprobs import sequence_logprobs


@pytest.fixture(scope="module")
def gpt2():
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=64, n_positions=64, n_embd=32, n_layer=2, n_head=2,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():  # large learned position embeddings: a shifted position moves every logit
        model.transformer.wpe.weight.normal_(0.0, 1.0)
    return model


SEQS = [
    Sequence(Prompt((1, 2, 3, 4, 5, 6, 7)), (8, 9, 10)),
    Sequence(Prompt((1, 11)), (12, 13, 14, 15, 16, 17)),
    Sequence(Prompt((1, 20, 21, 22)), (23,)),
]


def alone(model, seq: Sequence, shift: int = 0) -> list[float]:
    """One sequence, no padding, full logits, positions 0.. (+ ``shift``: what a position-id bug does)."""
    ids = torch.tensor([list(seq.prompt.ids) + list(seq.response)])
    pos = torch.arange(ids.shape[1])[None] + shift
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids, position_ids=pos).logits[0].float(), -1)
    p = len(seq.prompt.ids)
    return [logp[p + j - 1, t].item() for j, t in enumerate(seq.response)]


def test_batched_log_probs_match_on_a_model_with_learned_positions(gpt2):
    with torch.no_grad():
        out = sequence_logprobs(gpt2, SEQS, pad_id=0)
    for i, s in enumerate(SEQS):
        ref = alone(gpt2, s)
        got = out.token_logps[i, : len(s.response)]
        assert torch.allclose(got, torch.tensor(ref), atol=1e-5)
        # the test can fail: positions shifted by the padding of a left-padded batch give other values
        assert max(abs(a - b) for a, b in zip(alone(gpt2, s, shift=3), ref, strict=True)) > 1e-2


class IgnoresLogitsToKeep(torch.nn.Module):
    """A model whose forward takes ``logits_to_keep`` and ignores it (returns every position)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, input_ids, attention_mask=None, logits_to_keep=0, **kwargs):  # noqa: ANN001, ANN003
        return self.inner(input_ids=input_ids, attention_mask=attention_mask, **kwargs)


def test_a_model_that_ignores_logits_to_keep_fails_loudly(gpt2):
    with pytest.raises(RuntimeError, match=r"ignores logits_to_keep.*misaligned"):
        sequence_logprobs(IgnoresLogitsToKeep(gpt2), SEQS, pad_id=0)

"""The log-prob engine: per-token response log-probs for batches of (prompt, response) sequences.

All roles of a batch (chosen + rejected, demonstration + generated, ...) go through the model in ONE
concatenated forward. Sequences are right-padded; the response token ``j`` of a row whose prompt has
``p`` tokens is predicted by the logits at position ``p + j - 1``. Only the positions that can hold a
response token are projected to the vocabulary (``logits_to_keep``), so long prompts cost no
``[L, V]`` logits.

Where the model is a plain decoder + linear head (``get_decoder()`` and ``get_output_embeddings()``, no
logit scaling or soft-capping), the head is instead applied to the response positions only, in chunks of
rows (:func:`chunked_token_logps`): the float32 ``[N, T, V]`` logits of the batch never exist at once, and
under autograd each chunk's logits are recomputed in the backward pass instead of being kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from harness.core.data import Row, Sequence


def masked_sum(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum over the last dimension where ``mask`` is set."""
    return (values * mask).sum(-1)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the last dimension where ``mask`` is set (0 for a fully masked row)."""
    return (values * mask).sum(-1) / mask.sum(-1).clamp(min=1)


@dataclass
class TokenLogProbs:
    """Per-token log-probs of responses, ``[N, T]``, with a ``[N, T]`` float mask (1 = response token)."""

    token_logps: torch.Tensor
    mask: torch.Tensor
    hidden: torch.Tensor | None = None  # [N, T, H]: the state that predicts each response token
    logits: torch.Tensor | None = None  # [N, T, V]

    def sum(self) -> torch.Tensor:
        """``[N]``: each response's log-prob, summed over its tokens (what ``LogProbBatch.logps`` holds)."""
        return masked_sum(self.token_logps, self.mask)

    def mean(self) -> torch.Tensor:
        """``[N]``: each response's mean per-token log-prob (0 for an empty response)."""
        return masked_mean(self.token_logps, self.mask)


def _pack(seqs: Seq[Sequence], pad_id: int, device: Any) -> tuple[torch.Tensor, torch.Tensor, list[int], list[int]]:
    prompt_lens = [len(s.prompt.ids) for s in seqs]
    resp_lens = [len(s.response) for s in seqs]
    if min(prompt_lens) == 0:
        raise ValueError("a sequence needs at least one prompt token (e.g. BOS) to score its response")
    total = max(p + r for p, r in zip(prompt_lens, resp_lens, strict=True))
    ids = torch.full((len(seqs), total), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), total), dtype=torch.long)
    for i, s in enumerate(seqs):
        row = list(s.prompt.ids) + list(s.response)
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        attn[i, : len(row)] = 1
    return ids.to(device), attn.to(device), prompt_lens, resp_lens


def check_kept_logits(logits: torch.Tensor, keep: int, model: Any) -> None:
    """Fail loudly when a model returned logits for another number of positions than ``logits_to_keep``
    asked for: indexing them as the last ``keep`` positions would score the wrong tokens, silently."""
    if logits.dim() != 3 or logits.shape[1] != keep:
        raise RuntimeError(
            f"{type(model).__name__} returned logits of shape {tuple(logits.shape)} for logits_to_keep={keep} "
            f"(expected [batch, {keep}, vocab]): the model ignores logits_to_keep, so its log-probs would be "
            f"misaligned; make its forward honour logits_to_keep, or drop that argument from its signature "
            f"(the engine then projects every position)"
        )


# Elements of float32 logits computed at once by chunked_token_logps (2**24 = 64 MiB; the backward of a chunk
# holds a few copies of it: bf16 and float32 logits and their gradients).
_CHUNK_ELEMENTS = 2**24
# Logits smaller than this (elements) are computed in one piece and kept for the backward pass.
_SMALL_LOGITS = 2**24


def chunked_token_logps(hidden: torch.Tensor, head: torch.nn.Module, targets: torch.Tensor) -> torch.Tensor:
    """``log softmax(head(hidden))[targets]`` for ``hidden [M, H]`` and ``targets [M]``, ``[M]`` float32.

    Rows are projected in chunks of at most ``_CHUNK_ELEMENTS`` logits; under autograd each chunk is
    checkpointed, so its logits are recomputed in the backward pass rather than stored."""
    vocab = head.weight.shape[0]
    rows = hidden.shape[0]
    if rows * vocab <= _SMALL_LOGITS:
        return _head_logps(hidden, targets, head.weight, head.bias)
    step = max(1, _CHUNK_ELEMENTS // vocab)
    grad = torch.is_grad_enabled() and (hidden.requires_grad or head.weight.requires_grad)
    parts = []
    for start in range(0, rows, step):
        h, t = hidden[start : start + step], targets[start : start + step]
        if grad:
            parts.append(checkpoint(_head_logps, h, t, head.weight, head.bias, use_reentrant=False))
        else:
            parts.append(_head_logps(h, t, head.weight, head.bias))
    return torch.cat(parts)


def _head_logps(h: torch.Tensor, t: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    logits = F.linear(h, weight, bias).float()
    return logits.gather(-1, t[:, None]).squeeze(-1) - logits.logsumexp(-1)


def _split_head(model: Any) -> tuple[Any, Any] | None:
    """(decoder, linear head) when the model's logits are exactly ``head(decoder(...).last_hidden_state)``."""
    config = getattr(model, "config", None)
    if config is None or any(getattr(config, k, None) not in (None, 1.0) for k in (
            "final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")):
        return None
    try:
        decoder, head = model.get_decoder(), model.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        return None
    if not isinstance(head, torch.nn.Linear) or decoder is None or decoder is model:
        return None
    return decoder, head


def sequence_logprobs(
    model: Any, seqs: Seq[Sequence], *, pad_id: int = 0, with_hidden: bool = False, with_logits: bool = False
) -> TokenLogProbs:
    """Per-token log-probs of each sequence's response under ``model`` (gradients flow)."""
    device = next(model.parameters()).device
    ids, attn, prompt_lens, resp_lens = _pack(seqs, pad_id, device)
    split = None if with_logits else _split_head(model)
    if split is not None:
        return _split_logprobs(split, seqs, ids, attn, prompt_lens, resp_lens, with_hidden)
    n, total = ids.shape
    t_max = max(max(resp_lens), 1)
    # Keep the last `keep` positions: they include every position that predicts a response token.
    keep = total - min(prompt_lens) + 1
    try:
        out = model(
            input_ids=ids, attention_mask=attn, logits_to_keep=keep, output_hidden_states=with_hidden, use_cache=False
        )
    except TypeError:  # an architecture without logits_to_keep: project every position
        keep = total
        out = model(input_ids=ids, attention_mask=attn, output_hidden_states=with_hidden, use_cache=False)
    check_kept_logits(out.logits, keep, model)
    logits = out.logits.float()  # [N, keep, V]
    offset = total - keep  # absolute position of logits[:, 0]
    # Index of the logit that predicts response token j of row i: p_i - 1 + j - offset.
    j = torch.arange(t_max, device=device)
    starts = torch.tensor(prompt_lens, device=device) - 1 - offset
    pos = (starts[:, None] + j[None, :]).clamp(max=keep - 1)
    mask = (j[None, :] < torch.tensor(resp_lens, device=device)[:, None]).float()
    targets = _response_targets(seqs, t_max, device)
    rows = torch.arange(n, device=device)[:, None]
    # Advanced indexing, not a gather over an expanded [N, T, V] index: its backward is a cheap
    # index_put instead of a scatter over the whole vocabulary.
    lse = logits.logsumexp(-1)  # [N, keep]
    token_logps = (logits[rows, pos, targets] - lse[rows, pos]) * mask
    hidden = None
    if with_hidden:
        last = out.hidden_states[-1][:, offset:, :]
        hidden = last.gather(1, pos[:, :, None].expand(-1, -1, last.shape[-1]))
    return TokenLogProbs(token_logps, mask, hidden, logits[rows, pos] if with_logits else None)


def _response_targets(seqs: Seq[Sequence], t_max: int, device: torch.device) -> torch.Tensor:
    """``[N, t_max]`` response token ids, padded with 0 (masked out by the caller)."""
    targets = torch.zeros((len(seqs), t_max), dtype=torch.long, device=device)
    for i, s in enumerate(seqs):
        if s.response:
            targets[i, : len(s.response)] = torch.tensor(s.response, dtype=torch.long, device=device)
    return targets


def _split_logprobs(split: tuple[Any, Any], seqs: Seq[Sequence], ids: torch.Tensor, attn: torch.Tensor,
                    prompt_lens: list[int], resp_lens: list[int], with_hidden: bool) -> TokenLogProbs:
    """sequence_logprobs through the decoder, then the head on response positions only (chunked)."""
    decoder, head = split
    device = ids.device
    n = ids.shape[0]
    t_max = max(max(resp_lens), 1)
    last = decoder(input_ids=ids, attention_mask=attn, use_cache=False).last_hidden_state  # [N, L, H]
    j = torch.arange(t_max, device=device)
    pos = (torch.tensor(prompt_lens, device=device)[:, None] - 1 + j[None, :]).clamp(max=ids.shape[1] - 1)
    mask = (j[None, :] < torch.tensor(resp_lens, device=device)[:, None]).float()
    targets = _response_targets(seqs, t_max, device)
    rows = torch.arange(n, device=device)[:, None]
    hidden = last[rows, pos]  # [N, T, H]: the state that predicts each response token
    keep = mask.bool()
    values = chunked_token_logps(hidden[keep], head, targets[keep])
    token_logps = torch.zeros((n, t_max), dtype=values.dtype, device=device).index_put((keep.nonzero(as_tuple=True)),
                                                                                      values)
    return TokenLogProbs(token_logps, mask, hidden if with_hidden else None, None)


@dataclass
class LogProbBatch:
    """What an objective sees: log-probs per role, reference log-probs and row values.

    ``B`` is the number of rows; a role is a key of the rows' ``seqs`` (``demo``, ``chosen`` and
    ``rejected``, ``sample``, ...: whatever the sampler named them).

    - ``logps[role]``: ``[B]`` summed response log-probs under the policy (with gradients);
    - ``tokens[role]``: the :class:`TokenLogProbs`: ``token_logps`` ``[B, T]`` (0 past a response's
      end), ``mask`` ``[B, T]`` (1.0 on response tokens), and with ``needs_hidden`` ``hidden``
      ``[B, T, H]`` and ``logits`` ``[B, T, V]``;
    - ``ref_logps[role]``: ``[B]`` the same under the reference, and ``ref_tokens[role]`` its ``[B, T]``
      per-token log-probs (no gradients; empty when the method's ``reference`` is ``"none"``);
    - ``values[name]``: ``[B]`` float tensors of the rows' scalars (rewards, weights, group ids: the
      sampler's ``Row.values``);
    - ``modules``: the method's own trainable modules (value or reward heads), if any.

    The objective returns one loss per row (``[B]``) and scalar metrics: see :mod:`harness.core.contract`.
    """

    logps: dict[str, torch.Tensor]
    tokens: dict[str, TokenLogProbs]
    ref_logps: dict[str, torch.Tensor] = field(default_factory=dict)
    ref_tokens: dict[str, torch.Tensor] = field(default_factory=dict)
    values: dict[str, torch.Tensor] = field(default_factory=dict)
    modules: Any = None

    def log_ratio(self, role: str) -> torch.Tensor:
        """h = log pi(y|x) - log pi_ref(y|x), summed over response tokens."""
        return self.logps[role] - self.ref_logps[role]

    def lengths(self, role: str) -> torch.Tensor:
        """``[B]`` float: the number of response tokens of each row's ``role`` (for length normalisation)."""
        return self.tokens[role].mask.sum(-1)


def roles_of(rows: Seq[Row]) -> list[str]:
    """The roles of a training set (every row must have the same)."""
    roles = list(rows[0].seqs)
    for r in rows:
        if list(r.seqs) != roles:
            raise ValueError(f"rows of one training set must share roles; got {roles} and {list(r.seqs)}")
    return roles


def batch_logprobs(
    model: Any,
    rows: Seq[Row],
    *,
    pad_id: int,
    ref: Mapping[str, list[torch.Tensor]] | None = None,
    with_hidden: bool = False,
    modules: Any = None,
) -> LogProbBatch:
    """One forward over every role of ``rows``; ``ref[role][i]`` are row i's reference token log-probs."""
    roles = roles_of(rows)
    flat = [r.seqs[role] for role in roles for r in rows]
    out = sequence_logprobs(model, flat, pad_id=pad_id, with_hidden=with_hidden, with_logits=with_hidden)
    b = len(rows)
    tokens: dict[str, TokenLogProbs] = {}
    for k, role in enumerate(roles):
        sl = slice(k * b, (k + 1) * b)
        t = max(1, max(len(r.seqs[role].response) for r in rows))
        tokens[role] = TokenLogProbs(
            out.token_logps[sl, :t],
            out.mask[sl, :t],
            None if out.hidden is None else out.hidden[sl, :t],
            None if out.logits is None else out.logits[sl, :t],
        )
    device = out.token_logps.device
    batch = LogProbBatch(logps={r: tokens[r].sum() for r in roles}, tokens=tokens, modules=modules)
    if ref is not None:
        for role in roles:
            padded = _pad([ref[role][i] for i in range(b)], tokens[role].mask.shape[1]).to(device)
            batch.ref_tokens[role] = padded
            batch.ref_logps[role] = padded.sum(-1)
    names = list(rows[0].values)
    for name in names:
        batch.values[name] = torch.tensor([float(r.values[name]) for r in rows], device=device)
    return batch


def _pad(rows: Seq[torch.Tensor], width: int) -> torch.Tensor:
    out = torch.zeros((len(rows), width))
    for i, r in enumerate(rows):
        out[i, : min(width, r.numel())] = r[:width]
    return out


@torch.inference_mode()
def reference_logprobs(
    model: Any, rows: Seq[Row], *, pad_id: int, batch_size: int = 16
) -> dict[str, list[torch.Tensor]]:
    """Per-token reference log-probs of every row and role, computed once (per round) and reused."""
    roles = roles_of(rows)
    out: dict[str, list[torch.Tensor]] = {role: [] for role in roles}
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        for role in roles:
            seqs = [r.seqs[role] for r in chunk]
            t = sequence_logprobs(model, seqs, pad_id=pad_id)
            host = t.token_logps.float().cpu()  # one device-to-host copy per batch, not one per row
            for i, s in enumerate(seqs):
                out[role].append(host[i, : len(s.response)].clone())
    return out

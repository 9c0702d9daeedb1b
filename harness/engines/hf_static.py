"""Static-cache decoding for :class:`~harness.engines.hf.HFEngine`: a fixed-shape KV cache and, on CUDA, the
decode step captured once as a CUDA graph and replayed for every token.

Why: at batch 64 a 360M model's decode step is ~1,000 small kernels; launched one by one from Python the GPU
sits idle most of the time (the step is *launch-bound*). A CUDA graph launches them all with one call.

How (the same rules of a completion as the dynamic path; only the mechanics differ):

- Shapes are bucketed so graphs are reused across calls and rounds: the batch is padded up to a power of two
  (extra rows repeat row 0 and are ignored) and the cache length up to a multiple of ``_LEN_BUCKET``. One
  :class:`_State` (cache, static input buffers, graph) is kept per ``(batch bucket, length bucket)`` for the
  life of the model object (cached per model, so every engine over the same model shares them).
- The prompt (prefill) runs eagerly with an explicit 4-D additive mask (left padding masked, causal), so no
  mask is built inside the model and the decode step's mask is a static buffer whose column ``t`` is opened
  just before the token at cache slot ``t`` is fed.
- Tokens are picked on the device (argmax, or a seeded sample) and written into a device buffer; the host
  reads them back only every ``_CHECK_EVERY`` tokens (one sync), applies EOS and stop strings to each row, and
  stops when all rows are done. When at most half the rows are alive, the live rows are copied into a smaller
  batch bucket (finished rows pruned).
- Graphs are used only on CUDA, for models without adapters (peft switches adapters on and off in Python,
  which a captured graph would not see). Elsewhere the same loop runs eagerly (used by the CPU tests).
"""

from __future__ import annotations

import inspect
import logging
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import torch

log = logging.getLogger(__name__)

_LEN_BUCKET = 128  # cache lengths are rounded up to a multiple of this
_CHECK_EVERY = 8  # tokens between host-side looks at the generated ids
_MAX_STATES = 6  # per model; the least recently used state (and its cache memory) goes first

# One runner per model object: graphs and caches survive across engines, calls and rounds.
_RUNNERS: weakref.WeakKeyDictionary[Any, _Runner] = weakref.WeakKeyDictionary()
# The CUDA devices this process has warmed up (:func:`warm_up`): paid once per process, kept across cells.
_WARMED: set[str] = set()


def batch_bucket(n: int) -> int:
    """The smallest power of two >= n."""
    return 1 << max(0, int(n) - 1).bit_length()


def length_bucket(n: int) -> int:
    return -(-int(n) // _LEN_BUCKET) * _LEN_BUCKET


def runner_for(model: Any, *, graphs: bool) -> _Runner:
    runner = _RUNNERS.get(model)
    if runner is None or runner.graphs != graphs or runner.fingerprint != _fingerprint(model):
        runner = _Runner(model, graphs=graphs)
        _RUNNERS[model] = runner
    return runner


def can_use_graphs(model: Any, device: torch.device) -> bool:
    return device.type == "cuda" and not hasattr(model, "peft_config")


def _fingerprint(model: Any) -> tuple:
    """Changes when the weights move (device, dtype, storage), which invalidates captured graphs."""
    params = list(model.parameters())
    ends = [params[0], params[-1]] if params else []
    return tuple((p.data_ptr(), p.dtype, p.device) for p in ends)


class _State:
    """Everything with a fixed address that one captured graph reads and writes."""

    def __init__(self, runner: _Runner, batch: int, length: int) -> None:
        model, dev = runner.model, runner.device
        self.batch, self.length = batch, length
        self.cache = _static_cache(model, batch, length, dev, runner.dtype)
        self.ids = torch.zeros((batch, 1), dtype=torch.long, device=dev)
        self.pos = torch.zeros((batch, 1), dtype=torch.long, device=dev)
        self.cpos = torch.zeros((1,), dtype=torch.long, device=dev)
        self.mask = torch.full((batch, 1, 1, length), runner.min_value, dtype=runner.dtype, device=dev)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.logits: torch.Tensor | None = None  # the graph's output buffer [batch, V]
        self.initialized = False


class _Runner:
    """Static states and graphs for one model (see the module docstring)."""

    def __init__(self, model: Any, *, graphs: bool) -> None:
        # A weak reference: the runner is the value of a weak-keyed entry for this model, and a strong one
        # would keep the model (and the caches) alive for the life of the process.
        self._model = weakref.ref(model)
        self.graphs = graphs
        self.fingerprint = _fingerprint(model)
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        if not self.dtype.is_floating_point:
            self.dtype = torch.float32
        self.min_value = torch.finfo(self.dtype).min
        params = _params(model.get_base_model() if hasattr(model, "get_base_model") else model)
        self.cache_kw = "cache" if "cache" in params else "past_key_values"
        self.pass_cpos = "cache_position" in params
        self.logits_kw = {"logits_to_keep": 1} if "logits_to_keep" in params else (
            {"num_logits_to_keep": 1} if "num_logits_to_keep" in params else {})
        self.states: dict[tuple[int, int], _State] = {}
        self.pool = torch.cuda.graph_pool_handle() if graphs else None
        self.capture_s = 0.0  # total time spent capturing graphs (reported by the bench)
        self.graph_error: str | None = None

    @property
    def model(self) -> Any:
        model = self._model()
        if model is None:  # pragma: no cover -- the entry goes with its model
            raise RuntimeError("the model of this static decoder was freed")
        return model

    # -- states and graphs ---------------------------------------------------------------------------
    def state(self, batch: int, length: int) -> _State:
        key = (batch, length)
        st = self.states.pop(key, None)
        if st is None:
            while len(self.states) >= _MAX_STATES:
                self.states.pop(next(iter(self.states)))
            st = _State(self, batch, length)
        self.states[key] = st  # most recently used last
        return st

    def _forward(self, st: _State, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor,
                 cpos: torch.Tensor) -> torch.Tensor:
        kw: dict[str, Any] = {self.cache_kw: st.cache, **self.logits_kw}
        if self.pass_cpos:
            kw["cache_position"] = cpos
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, **kw)
        return out.logits[:, -1, :]

    def _step(self, st: _State) -> torch.Tensor:
        """One decode step from the static buffers (eager, or replaying the captured graph)."""
        if st.graph is not None:
            st.graph.replay()
            assert st.logits is not None
            return st.logits
        return self._forward(st, st.ids, st.mask, st.pos, st.cpos)

    def _capture(self, st: _State) -> None:
        """Capture the decode step of ``st``; the cache's own position counters are restored afterwards."""
        t0 = time.perf_counter()
        counters = _counters(st.cache)
        saved = [c.clone() for c in counters]
        try:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm-up outside the capture (allocator, cuBLAS workspaces)
                self._forward(st, st.ids, st.mask, st.pos, st.cpos)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool):
                st.logits = self._forward(st, st.ids, st.mask, st.pos, st.cpos)
            st.graph = graph
        except Exception as e:  # noqa: BLE001 -- any failure to capture: decode eagerly instead
            self.graphs = False
            self.graph_error = f"{type(e).__name__}: {e}"[:300]
            log.warning("hf engine: CUDA graph capture failed (%s); decoding without graphs", self.graph_error)
            st.graph, st.logits = None, None
        finally:
            for c, s in zip(counters, saved, strict=True):
                c.copy_(s)
            self.capture_s += time.perf_counter() - t0

    def _ensure_ready(self, st: _State) -> None:
        """Allocate a lazily initialised cache (one dummy token) so its tensors exist before rows are copied."""
        if st.initialized:
            return
        if not _cache_tensors(st.cache):
            mask = torch.zeros((st.batch, 1, 1, st.length), dtype=self.dtype, device=self.device)
            self._forward(st, st.ids, mask, st.pos, st.cpos)
            for c in _counters(st.cache):
                c.zero_()
        st.initialized = True

    # -- decoding ------------------------------------------------------------------------------------
    def decode(
        self,
        batch: list[tuple[int, ...]],
        *,
        max_new_tokens: int,
        pad_id: int,
        pick: Callable[[torch.Tensor], torch.Tensor],
        absorb: Callable[[int, list[int]], bool],
    ) -> None:
        """Decode ``batch``; ``absorb(i, new_ids)`` gets row ``i``'s next ids and returns True once it is done."""
        size = len(batch)
        width = max(len(ids) for ids in batch)
        length = length_bucket(width + max_new_tokens)
        st = self.state(batch_bucket(size), length)
        rows = st.batch
        dev = self.device

        ids = torch.full((rows, width), pad_id, dtype=torch.long)
        attn = torch.zeros((rows, width), dtype=torch.bool)
        for i in range(rows):
            row = batch[i] if i < size else batch[0]
            ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
            attn[i, width - len(row):] = True
        ids, attn = ids.to(dev), attn.to(dev)
        positions = (attn.long().cumsum(-1) - 1).clamp(min=0)

        # Prefill: causal over real tokens; every query sees at least itself (no fully masked row).
        causal = torch.ones((width, width), dtype=torch.bool, device=dev).tril()
        allowed = (causal[None] & attn[:, None, :]) | torch.eye(width, dtype=torch.bool, device=dev)[None]
        prefill_mask = torch.full((rows, 1, width, length), self.min_value, dtype=self.dtype, device=dev)
        prefill_mask[:, 0, :, :width].masked_fill_(allowed, 0.0)
        st.cache.reset()
        st.initialized = True
        logits = self._forward(st, ids, prefill_mask, positions, torch.arange(width, device=dev))
        st.mask.fill_(self.min_value)
        st.mask[:, 0, 0, :width].masked_fill_(attn, 0.0)
        st.pos.copy_(positions[:, -1:] + 1)
        st.cpos.fill_(width)
        if self.graphs and st.graph is None:
            self._capture(st)

        out = torch.empty((rows, max_new_tokens), dtype=torch.long, device=dev)
        active = list(range(size))  # row of the state -> index into `batch`
        done = [False] * size
        checked = 0  # tokens of `out` already handed to `absorb`
        tok = pick(logits)
        for step in range(max_new_tokens):
            out[:, step].copy_(tok)
            last = step == max_new_tokens - 1
            if last or (step + 1 - checked) >= _CHECK_EVERY:
                new = out[: len(active), checked : step + 1].tolist()  # the one host sync per _CHECK_EVERY tokens
                checked = step + 1
                for r, i in enumerate(active):
                    if not done[i]:
                        done[i] = absorb(i, new[r])
                alive = [r for r, i in enumerate(active) if not done[i]]
                if not alive or last:
                    break
                if len(alive) <= st.batch // 2 and batch_bucket(len(alive)) < st.batch:
                    st, out, tok = self._compact(st, alive, out, tok, width + step)
                    active = [active[r] for r in alive]
                    checked = step + 1
            col = width + step  # the cache slot of the token fed now
            st.ids.copy_(tok[: st.batch, None])
            st.mask[:, 0, 0, col] = 0.0
            logits = self._step(st)
            st.pos.add_(1)
            st.cpos.add_(1)
            tok = pick(logits)

    def _compact(self, st: _State, alive: list[int], out: torch.Tensor, tok: torch.Tensor,
                 filled: int) -> tuple[_State, torch.Tensor, torch.Tensor]:
        """Move the live rows of ``st`` (cache slots ``< filled`` are in use) into a smaller batch bucket."""
        small = self.state(batch_bucket(len(alive)), st.length)
        self._ensure_ready(small)
        keep = torch.tensor(alive + [alive[0]] * (small.batch - len(alive)), dtype=torch.long, device=self.device)
        for (k_big, v_big), (k_small, v_small) in zip(_cache_tensors(st.cache), _cache_tensors(small.cache),
                                                      strict=True):
            k_small.copy_(k_big.index_select(0, keep))
            v_small.copy_(v_big.index_select(0, keep))
        for c in _counters(small.cache):
            c.fill_(filled)
        small.mask.copy_(st.mask.index_select(0, keep))
        small.pos.copy_(st.pos.index_select(0, keep))
        small.cpos.copy_(st.cpos)
        small.ids.copy_(st.ids.index_select(0, keep))
        if self.graphs and small.graph is None:
            self._capture(small)
        return small, out.index_select(0, keep), tok.index_select(0, keep)


# -- transformers cache helpers (4.46 .. 5.x) ----------------------------------------------------------------

def _params(model: Any) -> set[str]:
    try:
        return set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError, AttributeError):
        return set()


def _static_cache(model: Any, batch: int, length: int, device: torch.device, dtype: torch.dtype) -> Any:
    from transformers import StaticCache

    accepted = set(inspect.signature(StaticCache.__init__).parameters)
    offer = {"config": model.config, "max_cache_len": length, "batch_size": batch, "max_batch_size": batch,
             "device": device, "dtype": dtype}
    kwargs = {k: v for k, v in offer.items() if k in accepted}
    if "batch_size" in kwargs:  # older versions accept both and warn about max_batch_size
        kwargs.pop("max_batch_size", None)
    return StaticCache(**kwargs)


def _cache_tensors(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(keys, values) per layer, once allocated ([] for a lazily initialised cache not yet used)."""
    layers = getattr(cache, "layers", None)
    if layers is not None:  # transformers >= 4.56
        return [(layer.keys, layer.values) for layer in layers if getattr(layer, "keys", None) is not None]
    return list(zip(cache.key_cache, cache.value_cache, strict=True))


def _counters(cache: Any) -> list[torch.Tensor]:
    """The cache's own on-device position counters (newer versions), which a replayed graph advances."""
    return [layer.cumulative_length for layer in getattr(cache, "layers", ())
            if isinstance(getattr(layer, "cumulative_length", None), torch.Tensor)]


def warm_up(device: str | torch.device | None = None) -> float:
    """Pay a process's one-off CUDA costs once (context, cuBLAS handle and workspace, SDPA kernels); seconds.

    Call it once per worker process before its first cell; a no-op off CUDA, and on a device this process
    warmed already (a reused worker's later cells: 0.0)."""
    dev = torch.device(device) if device is not None else (
        torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
    if dev.type != "cuda":
        return 0.0
    key = str(dev if dev.index is not None else torch.device("cuda", torch.cuda.current_device()))
    if key in _WARMED:  # a reused worker: this process paid it in an earlier cell
        return 0.0
    t0 = time.perf_counter()
    for dtype in (torch.bfloat16, torch.float32):
        a = torch.randn((256, 256), device=dev, dtype=dtype)
        (a @ a).sum()
        q = torch.randn((2, 4, 16, 64), device=dev, dtype=dtype)
        torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True)
        torch.nn.functional.scaled_dot_product_attention(q, q, q, attn_mask=torch.zeros((2, 1, 16, 16), device=dev,
                                                                                            dtype=dtype))
    torch.cuda.synchronize(dev)
    _WARMED.add(key)
    return time.perf_counter() - t0


def release(model: Any) -> None:
    """Drop ``model``'s static caches and graphs (their GPU memory); the next static decode rebuilds them."""
    _RUNNERS.pop(model, None)


def cache_states(model: Any) -> Sequence[tuple[int, int]]:
    """The (batch, length) buckets for which ``model`` has a static state (and, on CUDA, a graph)."""
    runner = _RUNNERS.get(model)
    return list(runner.states) if runner is not None else []

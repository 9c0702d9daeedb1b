"""The objective contract, checked while training, and the one-line errors a plugin's bug becomes.

A method's ``objective(batch, params)`` must return ``(loss, metrics)`` where

- ``loss`` is a tensor with one value per row of the batch (shape ``[B]``), or a 0-d tensor that is
  already the batch mean; the trainer averages it. Any other shape (``[B, 3]``, a ``[B, B]``
  broadcast, half the batch) is refused: it would train on a wrong number silently;
- ``loss`` carries a gradient (it is computed from ``batch.logps`` / ``batch.tokens``, not detached);
- ``metrics`` is a mapping of names to scalars (Python numbers or one-element tensors);
- the loss stays finite (NaN or inf stops the cell, naming the step and the metric that went
  non-finite first).

The shape, gradient and metrics rules are checked at the first step a process trains (every step costs
nothing extra); finiteness at every step. A violation is a :class:`PluginError`: one line naming the
method, the plugin file, what was seen and the rule. A sampler that raises becomes one such line too.

Tracebacks: the CLI shows one line and writes the full traceback to a log (``harness run``: the cell's
``error.log``; a sweep: the cell's ``worker.log``); ``--debug`` or ``HARNESS_DEBUG=1`` shows it instead.
"""

from __future__ import annotations

import inspect
import math
import os
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from harness.core.errors import HarnessError


class PluginError(HarnessError):
    """A plugin broke its contract at run time: one line naming the plugin, what was seen and the rule.
    Exit code 1, as a failed sweep cell: work ran (and may be recorded), so it is no "bad input" (2)."""

    exit_code = 1


class CrashError(HarnessError):
    """An unexpected exception, shown as one line with the path of the full traceback (exit code 1)."""

    exit_code = 1


def debug_enabled() -> bool:
    """``--debug`` or ``HARNESS_DEBUG=1``: show full tracebacks instead of one line."""
    return os.environ.get("HARNESS_DEBUG", "") not in ("", "0")


def source_file(fn: Any) -> str:
    """The file a plugin function is defined in (``?`` when it cannot be told)."""
    fn = getattr(fn, "func", fn)  # functools.partial
    try:
        return inspect.getsourcefile(inspect.unwrap(fn)) or "?"
    except (TypeError, ValueError):
        return "?"


def describe_method(method: Any, fn: Any = None) -> str:
    return f"method '{method.name}' ({source_file(fn if fn is not None else method.objective)})"


def _shape(x: Any) -> str:
    return "[" + ", ".join(str(d) for d in x.shape) + "]"


def _is_scalar(v: Any) -> bool:
    if isinstance(v, bool):
        return True
    if isinstance(v, (int, float)):
        return True
    if isinstance(v, torch.Tensor):
        return v.numel() == 1
    try:
        import numpy as np

        return isinstance(v, np.generic) or (isinstance(v, np.ndarray) and v.size == 1)
    except ImportError:  # pragma: no cover
        return False


def call_sampler(method: Any, ctx: Any) -> Any:
    """``method.sampler(ctx)``; an exception becomes one line naming the method, its file and the round."""
    try:
        return method.sampler(ctx)
    except HarnessError:
        raise
    except Exception as exc:  # noqa: BLE001 - a plugin's bug becomes one line (the log keeps the traceback)
        raise PluginError(
            f"{describe_method(method, method.sampler)}: its sampler raised {type(exc).__name__}: {exc} in round "
            f"{getattr(ctx, 'round', 0) + 1}; rule: sampler(ctx) returns the round's list of training rows"
        ) from exc


def batch_size_of(batch: Any) -> int | None:
    """B: the number of rows of a :class:`~harness.models.logprobs.LogProbBatch`."""
    for v in getattr(batch, "logps", {}).values():
        return int(v.shape[0])
    return None


def check_output(method: Any, out: Any, batch_size: int | None) -> tuple[torch.Tensor, Mapping[str, Any]]:
    """The full contract on one ``objective`` result; returns ``(loss, metrics)`` or raises PluginError."""
    where = describe_method(method)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        seen = f"a tensor of shape {_shape(out)}" if isinstance(out, torch.Tensor) else type(out).__name__
        if isinstance(out, (tuple, list)):
            seen = f"a {type(out).__name__} of {len(out)} items"
        raise PluginError(f"{where}: objective returned {seen}; rule: return (loss, metrics), metrics a dict "
                          f"of scalars (may be empty: {{}})")
    loss, metrics = out
    if not isinstance(loss, torch.Tensor):
        raise PluginError(f"{where}: the loss is a {type(loss).__name__} ({loss!r:.40}); rule: the loss is a tensor "
                          f"computed from the batch's log-probs, one value per row (shape [B])")
    if not isinstance(metrics, Mapping):
        raise PluginError(f"{where}: metrics is a {type(metrics).__name__}, not a dict; rule: return (loss, metrics), "
                          f"metrics a dict of scalars (may be empty: {{}})")
    b = batch_size
    if loss.dim() != 0 and not (loss.dim() == 1 and (b is None or loss.shape[0] == b)):
        hint = ""
        if b is not None and loss.dim() == 2 and tuple(loss.shape) == (b, b):
            hint = " (a [B, B] broadcast: a [B] tensor met a [B, 1] one)"
        elif b is not None and loss.dim() == 1:
            hint = f" ({loss.shape[0]} values for {b} rows)"
        raise PluginError(f"{where}: the loss has shape {_shape(loss)}{hint} for a batch of B={b} rows; rule: one "
                          f"value per row, shape [{b}] (or a 0-d batch mean)")
    if not loss.requires_grad or loss.grad_fn is None:
        raise PluginError(f"{where}: the loss carries no gradient (requires_grad=False); rule: compute it from "
                          f"batch.logps / batch.tokens without .detach(), .item() or torch.no_grad()")
    for k, v in metrics.items():
        if not isinstance(k, str):
            raise PluginError(f"{where}: metric name {k!r} is a {type(k).__name__}; rule: metric names are strings")
        if not _is_scalar(v):
            seen = f"shape {_shape(v)}" if hasattr(v, "shape") else f"a {type(v).__name__}"
            raise PluginError(f"{where}: metric '{k}' is {seen}; rule: a metric is one number (a float or a "
                              f"one-element tensor): take .mean() of it")
    return loss, metrics


class ObjectiveContract:
    """Calls a method's objective in the trainer: the whole contract once, finiteness at every step."""

    def __init__(self) -> None:
        self.checked = False
        self.first_bad: tuple[str, int, int] | None = None  # (metric, round, step) first seen non-finite

    def __call__(self, method: Any, batch: Any, params: Any, rnd: int, step: int
                 ) -> tuple[torch.Tensor, dict[str, float]]:
        """``method.objective(batch, params)``; returns the batch-mean loss (finite) and the metrics as floats."""
        try:
            out = method.objective(batch, params)
        except HarnessError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise PluginError(f"{describe_method(method)}: its objective raised {type(exc).__name__}: {exc} at step "
                              f"{step + 1} of round {rnd + 1}; rule: objective(batch, params) returns (loss, metrics)"
                              ) from exc
        if not self.checked:
            loss, metrics = check_output(method, out, batch_size_of(batch))
            self.checked = True
        else:
            loss, metrics = out
        values: dict[str, float] = {}
        for k, v in metrics.items():
            f = float(v.detach()) if isinstance(v, torch.Tensor) else float(v)
            values[k] = f
            if not math.isfinite(f) and self.first_bad is None:
                self.first_bad = (k, rnd, step)
        mean = loss.mean()
        if not torch.isfinite(mean):
            if self.first_bad is not None:
                k, r, s = self.first_bad
                first = f"metric '{k}' went non-finite first, at step {s + 1} of round {r + 1}"
            else:
                first = "the loss went non-finite first (every metric was finite)"
            raise PluginError(f"{describe_method(method)}: the loss is {mean.item()} at step {step + 1} of round "
                              f"{rnd + 1}; {first}; rule: the loss stays finite (lower train.lr, or guard logs and "
                              f"divisions in the objective)")
        return mean, values


# -- one line instead of a traceback -----------------------------------------------------------------------


def write_log(path: Path, exc: BaseException) -> Path | None:
    """Append ``exc``'s full traceback to ``path``; returns the path (None when it cannot be written)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
            f.write("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        return path
    except OSError:
        return None


def one_line(exc: BaseException, log: Path | None) -> HarnessError:
    """The error to show for ``exc``: its one line (HarnessError) or ``Type: message``, plus the log's path."""
    where = f" (full traceback: {log}; --debug shows it here)" if log is not None else ""
    if isinstance(exc, HarnessError):
        out = type(exc)(exc.message + where)
        out.exit_code = exc.exit_code
        return out
    text = " ".join(str(exc).split())
    return CrashError(f"{type(exc).__name__}: {text}{where}" if text else f"{type(exc).__name__}{where}")


def guarded(run: Callable[[], Any], log_path: Path) -> Any:
    """Run ``run()``; an exception becomes one line plus ``log_path`` (the full traceback) unless debugging.

    Bad input (a :class:`HarnessError` that is no :class:`PluginError` and has no cause) and click's own
    exits pass through unchanged: their line says everything."""
    import click

    try:
        return run()
    except (KeyboardInterrupt, SystemExit, click.exceptions.Exit, click.exceptions.Abort):
        raise
    except Exception as exc:  # noqa: BLE001
        plain = isinstance(exc, click.ClickException) and not isinstance(exc, PluginError) and exc.__cause__ is None
        if debug_enabled():
            if isinstance(exc, click.ClickException) and not getattr(exc, "_harness_shown", False):
                traceback.print_exc()  # click would show only its message
                exc._harness_shown = True  # type: ignore[attr-defined]
            raise
        if plain or getattr(exc, "_harness_logged", False):
            raise
        error = one_line(exc, write_log(log_path, exc))
        error._harness_logged = True  # type: ignore[attr-defined]
        raise error from None

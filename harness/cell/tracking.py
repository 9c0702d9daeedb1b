"""``--log-to wandb|mlflow|tensorboard``: each cell a run in the tools researchers already use.

Each cell becomes one run, grouped by sweep (the suite's name; ``harness-run`` for ``harness run``), with
the cell's resolved config, the per-step training metrics (loss, lr, grad norm, the method's own) at the
global step, and each round's evaluation metrics at the step where that round ended. The backends are
optional extras (``pip install wandb`` / ``mlflow-skinny`` / ``tensorboard``); a missing one is a one-line
error before anything runs. Where they write:

- wandb: ``<results root>/wandb`` (``WANDB_MODE=offline`` keeps it local; ``wandb sync`` uploads later);
- mlflow: ``$MLFLOW_TRACKING_URI``, else ``<results root>/mlruns`` (``mlflow ui --backend-store-uri ...``);
- tensorboard: ``<results root>/tensorboard/<group>/<run>`` (``tensorboard --logdir ...``).

A run is named ``<label>-<benchmark>-seed<seed>-<cell id prefix>``: the method's label in the sweep (``harness
run``: the method's name), with ``-untrained`` added when the cell trains nothing (``train.rounds = 0`` or
``steps = 0``) and its label does not already say so, so an evaluated-as-loaded row never looks like a trained one.
The ``lr`` logged at a step is the learning rate that step used. When a cell ends, mlflow also gets its
``record.json`` (metrics, config, provenance) and, if the model was saved (``train.save_model``), the model
folder as artefacts; wandb and tensorboard get neither.

The choice travels to sweep workers in ``$HARNESS_LOG_TO`` (comma-separated) and ``$HARNESS_TRACK_GROUP``; a
worker names the run from ``$HARNESS_TRACK_LABEL`` (the cell's label in the sweep).
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError

BACKENDS = {"wandb": ("wandb", "wandb"), "mlflow": ("mlflow", "mlflow-skinny"),
            "tensorboard": ("tensorboard", "tensorboard")}


def check(names: list[str] | tuple[str, ...]) -> list[str]:
    """Validate backend names and that their libraries are installed (one-line errors)."""
    out = []
    for name in names:
        for n in str(name).split(","):
            n = n.strip().lower()
            if not n:
                continue
            if n not in BACKENDS:
                from harness.core.errors import unknown_name

                raise unknown_name("--log-to backend", n, list(BACKENDS), where="--log-to")
            module, dist = BACKENDS[n]
            if importlib.util.find_spec(module) is None:
                raise HarnessError(f"--log-to {n}: the {module} package is not installed; pip install {dist}")
            out.append(n)
    return out


def configure(names: list[str] | tuple[str, ...], group: str) -> list[str]:
    """Validate and export the choice to this process and its workers."""
    chosen = check(names)
    if chosen:
        os.environ["HARNESS_LOG_TO"] = ",".join(chosen)
        os.environ["HARNESS_TRACK_GROUP"] = group
    return chosen


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v if isinstance(v, (int, float, str, bool)) or v is None else json.dumps(v, default=str)
    return out


class Tracker:
    """Fans one cell's config and metrics out to the chosen backends."""

    def __init__(self, names: list[str], group: str, run_name: str, config: Mapping[str, Any], root: Path) -> None:
        self.backends: list[Any] = []
        flat = _flat(config)
        for name in names:
            if name == "wandb":
                import wandb

                (root / "wandb").mkdir(parents=True, exist_ok=True)
                self.backends.append(("wandb", wandb.init(project=os.environ.get("WANDB_PROJECT", "alignment-harness"),
                                                          group=group, name=run_name, config=dict(config),
                                                          dir=str(root), reinit=True)))
            elif name == "mlflow":
                import mlflow

                if not os.environ.get("MLFLOW_TRACKING_URI"):  # a local file store (mlflow 3 asks to opt in)
                    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
                    mlflow.set_tracking_uri((root / "mlruns").resolve().as_uri())
                mlflow.set_experiment(group)
                run = mlflow.start_run(run_name=run_name, tags={"sweep": group})
                mlflow.log_params({k[:250]: str(v)[:500] for k, v in flat.items()})
                self.backends.append(("mlflow", run))
            elif name == "tensorboard":
                from torch.utils.tensorboard import SummaryWriter

                writer = SummaryWriter(log_dir=str(root / "tensorboard" / group / run_name))
                writer.add_text("config", "```\n" + json.dumps(dict(config), indent=1, default=str) + "\n```")
                self.backends.append(("tensorboard", writer))

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        values = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        for name, b in self.backends:
            if name == "wandb":
                b.log(values, step=step)
            elif name == "mlflow":
                import mlflow

                mlflow.log_metrics({k.replace(",", "_"): v for k, v in values.items()}, step=step)
            else:
                for k, v in values.items():
                    b.add_scalar(k, v, step)

    def artifacts(self, paths: list[Path]) -> None:
        """Attach files or folders (the cell's record, the saved model) to the run (mlflow only)."""
        for name, _ in self.backends:
            if name != "mlflow":
                continue
            import mlflow

            for p in paths:
                if p.is_dir():
                    mlflow.log_artifacts(str(p), artifact_path=p.name)
                elif p.is_file():
                    mlflow.log_artifact(str(p))

    def finish(self, ok: bool = True) -> None:
        for name, b in self.backends:
            if name == "wandb":
                b.finish(exit_code=0 if ok else 1)
            elif name == "mlflow":
                import mlflow

                mlflow.end_run(status="FINISHED" if ok else "FAILED")
            else:
                b.close()
        self.backends.clear()


def run_label(cell: Any) -> str:
    """The label naming a cell's run: its sweep label (``$HARNESS_TRACK_LABEL``) or method name, marked
    ``-untrained`` when the cell trains nothing."""
    label = os.environ.get("HARNESS_TRACK_LABEL") or cell.config.method
    if cell.train.rounds * cell.train.steps == 0 and "untrained" not in label:
        label += "-untrained"
    return " ".join(label.split()).replace(" ", "")


def from_env(cell: Any) -> Tracker | None:
    """The tracker for a cell when ``$HARNESS_LOG_TO`` names backends, else None."""
    names = [n for n in os.environ.get("HARNESS_LOG_TO", "").split(",") if n.strip()]
    if not names:
        return None
    from harness.core.paths import results_root

    cfg = cell.config
    run_name = f"{run_label(cell)}-{cfg.benchmark}-seed{cfg.seed}-{cell.cell_id[:8]}".replace("/", "_")
    return Tracker(check(names), os.environ.get("HARNESS_TRACK_GROUP", "harness-run"), run_name,
                   cell.resolved_dict(), results_root())

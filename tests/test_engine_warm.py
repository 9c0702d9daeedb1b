"""An engine's one-off costs are paid before a cell's first generation (issue 17: first call >= 0.8x warm).

The CUDA path of ``HFEngine.warm`` runs only on a GPU (measured in FINDINGS.md section 9); here: it is a
no-op on a CPU, and every engine a cell builds is warmed exactly once, before it generates.
"""

from __future__ import annotations

from typing import Any

from harness.cell.run import CellConfig, resolve, run_cell, warm_engine
from harness.core.plugins import load
from harness.core.registry import EngineSpec
from harness.engines.hf import HFEngine
from harness.models.loading import load_model


def test_hf_warm_is_a_no_op_on_a_cpu() -> None:
    loaded = load_model("tiny:nano")
    assert HFEngine(loaded.model, loaded.tokenizer).warm() == 0.0


def test_warm_engine_logs_the_time_and_skips_engines_without_warm() -> None:
    lines: list[str] = []

    class Slow:
        def warm(self) -> float:
            return 0.25

    assert warm_engine(Slow(), lines.append) == 0.25 and lines == ["engine warm-up: 0.25 s"]
    assert warm_engine(object(), lines.append) == 0.0 and len(lines) == 1


def test_a_cell_warms_each_engine_once_before_it_generates() -> None:
    events: list[tuple[str, int]] = []

    class Recording(HFEngine):
        def warm(self, **kwargs: Any) -> float:
            events.append(("warm", id(self)))
            return super().warm(**kwargs)

        def generate(self, prompts: Any, **kwargs: Any) -> Any:
            events.append(("generate", id(self)))
            return super().generate(prompts, **kwargs)

    host = load(env={"HARNESS_LOAD_PLUGINS": "online_dpo,didactic,engines"})
    host.registry.register_callback("engine", "test")(EngineSpec(
        name="recording", description="hf, recording warm() and generate() calls",
        factory=lambda loaded, **_: Recording(loaded.model, loaded.tokenizer)))
    cfg = CellConfig(model="tiny:nano", method="online-dpo", benchmark="didactic-r1", engine="recording",
                     benchmark_params={"n_states": 4, "warm_steps": 2}, train={"rounds": 1, "steps": 1, "batch_size": 4})
    run_cell(resolve(cfg, host), host, progress=False, log=lambda m: None, cache=None)
    engines = {e for _, e in events}
    assert any(kind == "generate" for kind, _ in events)
    for e in engines:  # each engine (policy's, reference's): warmed once, before its first generation
        mine = [kind for kind, who in events if who == e]
        assert mine[0] == "warm" and mine.count("warm") == 1

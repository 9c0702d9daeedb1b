"""One cell across N processes (torch.distributed, gloo on the CPU): N = 2 gives N = 1's numbers with the same
global batch, for sft, dpo, gsil and rloo, under DDP and FSDP2; FSDP shards the trained weights and the
optimizer state (about 1/N each per rank); an FSDP checkpoint resumes on the same N and refuses another;
a bare ``torchrun`` of ``harness run`` (and ``--nproc 2``) prints one JSON document and writes one record.

Tolerance: per-step losses and metrics within 1e-4 absolute + 1e-3 relative, final metrics within 1e-4 absolute:
the processes sum gradients in another order than one process does (float32), and Adam's normalisation turns
those ~1e-7 differences of near-zero gradients into differences of lr size; we saw up to 2e-5 (DPO's margin).
One spawn of 2 processes runs every check of the N = 2 side (starting processes is what costs).
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.cell.run import CellConfig, CellRun, resolve
from harness.core.errors import HarnessError
from harness.core.plugins import load
from harness.training import distributed
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = {"HARNESS_LOAD_PLUGINS": "sft,dpo,gsil,rloo,didactic,engines"}
BENCH = {"n_states": 4, "warm_steps": 5}
METHODS: dict[str, dict[str, Any]] = {
    "sft": {},
    "dpo": {},
    "gsil": {},
    "rloo": {"n": 2},  # on-policy: samples drawn every round (temperature 1)
}
STRATEGIES = ("ddp", "fsdp")
REL, ABS, FINAL_ABS = 1e-3, 1e-4, 1e-4


def cell_of(host: Any, method: str, strategy: str = "ddp", **train: Any) -> Any:
    return resolve(CellConfig(model="tiny:nano", method=method, benchmark="didactic-r1", benchmark_params=BENCH,
                              method_params=METHODS[method],
                              train={"rounds": 1, "steps": 2, "batch_size": 4, "grad_accum": 2, "eval_initial": False,
                                     "strategy": strategy, **train}), host)


def run(cell: Any, host: Any, out_dir: Path | None = None) -> tuple[dict[str, Any], Any]:
    """run_cell's phases (the trainer stays reachable): the record and the CellRun."""
    r = CellRun(cell, host, out_dir=out_dir, resume=True, progress=False, log=lambda m: None, cache=None,
                status=None, t_start=0.0)
    r.load()
    r.warm_start()
    r.prepare_training()
    r.restore()
    r.train()
    return r.record(), r


def summary(record: dict[str, Any]) -> dict[str, Any]:
    return {"steps": [{k: v for k, v in s.items() if k != "step_s"} for s in record["steps"]],
            "final": record["final"], "processes": record["provenance"]["processes"]}


def memory(r: Any) -> dict[str, int]:
    """Bytes this rank holds of the trained parameters and of the optimizer state."""
    t = r.trainer
    return {"params": distributed.local_bytes(t.model.parameters()),
            "optimizer": distributed.local_bytes(distributed.optimizer_tensors(t.optimizer))}


def _ranks(result: str, ckpt_dir: str) -> None:
    """Every N = 2 check in one spawn; rank 0 pickles what the test compares."""
    import torch

    torch.set_num_threads(1)
    host = load(env=PLUGINS)
    w = distributed.world()
    out: dict[str, Any] = {"world": w.size, "memory": {}}
    for method in METHODS:
        for strategy in STRATEGIES:
            record, r = run(cell_of(host, method, strategy), host)
            out[method, strategy] = summary(record)
            if method == "dpo":
                out["memory"][strategy] = distributed.gather([memory(r)], w)
    # An FSDP checkpoint (kept), then a fresh run of the same cell in the same folder resumes from it.
    cell = cell_of(host, "dpo", "fsdp", keep_checkpoint=True)
    first, _ = run(cell, host, Path(ckpt_dir))
    distributed.barrier(w)
    if w.main:
        for name in ("record.json", "rounds.json", "records.json"):
            (Path(ckpt_dir) / name).unlink()
    distributed.barrier(w)
    again, r = run(cell, host, Path(ckpt_dir))
    out["resume"] = {"first": first["final"], "again": again["final"], "start_round": r.trainer.start_round}
    if w.main:
        with open(result, "wb") as f:
            pickle.dump(out, f)


@pytest.fixture(scope="module")
def two(tmp_path_factory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("ranks")
    distributed.spawn(2, "cpu", _ranks, str(tmp / "out.pkl"), str(tmp / "ckpt"))
    with open(tmp / "out.pkl", "rb") as f:
        out = pickle.load(f)
    out["ckpt"] = tmp / "ckpt"
    return out


@pytest.fixture(scope="module")
def host() -> Any:
    return load(env=PLUGINS)


def close(a: float, b: float, rel: float = REL, abs_: float = ABS) -> bool:
    return abs(a - b) <= abs_ + rel * abs(b)


@pytest.mark.parametrize("method", list(METHODS))
def test_two_processes_give_one_process_numbers_with_the_same_global_batch(two, host, method):
    one = summary(run(cell_of(host, method), host)[0])
    assert one["processes"] == 1
    for strategy in STRATEGIES:
        got = two[method, strategy]
        assert got["processes"] == 2
        assert len(got["steps"]) == len(one["steps"]) == 2
        for s2, s1 in zip(got["steps"], one["steps"], strict=True):
            assert s2.keys() == s1.keys()
            bad = {k: (s2[k], s1[k]) for k in s1 if not close(s2[k], s1[k])}
            assert not bad, f"{method}/{strategy} step {s1['step']}: {bad}"
        bad = {k: (got["final"][k], v) for k, v in one["final"].items() if abs(got["final"][k] - v) > FINAL_ABS}
        assert not bad, f"{method}/{strategy} final: {bad}"
    # a training step moved the loss: equal numbers are not two untrained copies
    assert one["steps"][0]["loss"] != one["steps"][1]["loss"]


def test_fsdp_shards_parameters_and_optimizer_state_over_the_ranks(two):
    ddp, fsdp = two["memory"]["ddp"], two["memory"]["fsdp"]
    whole = ddp[0]  # DDP: every rank holds the whole model and optimizer state
    assert ddp[0] == ddp[1]
    for rank in fsdp:
        for what in ("params", "optimizer"):
            assert 0.4 * whole[what] <= rank[what] <= 0.6 * whole[what], (what, rank, whole)
    assert sum(r["params"] for r in fsdp) == whole["params"]


def test_an_fsdp_checkpoint_resumes_on_the_same_number_of_processes_and_refuses_another(two, host):
    res = two["resume"]
    assert res["start_round"] == 1  # resumed after round 1 from the sharded checkpoint: nothing trained again
    assert res["again"] == res["first"]  # the checkpointed weights evaluate to the same numbers
    ckpt = two["ckpt"] / "checkpoint"
    assert [p.name for p in ckpt.glob("dcp-*")] and (ckpt / "checkpoint.pt").is_file()
    r = CellRun(cell_of(host, "dpo", "fsdp", keep_checkpoint=True), host, out_dir=two["ckpt"], resume=True,
                progress=False, log=lambda m: None, cache=None, status=None, t_start=0.0)
    r.load()
    r.warm_start()
    r.prepare_training()
    with pytest.raises(HarnessError, match="resume it with train.processes=2"):
        r.trainer.try_resume()


def test_bad_settings_for_several_processes_are_one_line(host):
    w = distributed.World(0, 2, 0)
    with pytest.raises(HarnessError, match="multiple of 2"):
        distributed.check(cell_of(host, "sft", batch_size=3).train, w)
    with pytest.raises(HarnessError, match="use train.strategy=ddp"):
        distributed.check(cell_of(host, "sft", "fsdp", lora=True).train, w)


def test_the_cell_id_does_not_depend_on_processes_or_strategy(host):
    base = cell_of(host, "dpo").cell_id
    assert cell_of(host, "dpo", "fsdp", processes=4, fsdp_cpu_offload=True).cell_id == base
    assert cell_of(host, "dpo", fsdp_mixed_precision=True).cell_id != base  # bfloat16 changes the numbers


def test_nccl_on_cuda_gloo_on_cpu_and_a_gpu_per_local_rank():
    """The CUDA path by contract (no GPU here): backend and device per local rank."""
    assert distributed.backend_for("cuda:1") == "nccl" and distributed.backend_for("cpu") == "gloo"
    assert distributed.device_for("cuda", 3) == "cuda:3" and distributed.device_for("cpu", 3) == "cpu"
    assert [distributed.bounds(10, distributed.World(r, 3)) for r in range(3)] == [(0, 4), (4, 7), (7, 10)]
    assert distributed.shard(list(range(4)), distributed.World(1, 2)) == [2, 3]


def _cli(args: list[str], tmp: Path, launcher: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HARNESS_LOAD_PLUGINS": PLUGINS["HARNESS_LOAD_PLUGINS"]}
    return subprocess.run([*launcher, "-m", "harness.cli", "--results", str(tmp), *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=300)


RUN = ["run", "--model", "tiny:nano", "--method", "sft", "--benchmark", "didactic-r1", "--set", "train.steps=2",
       "--set", "benchmark.n_states=4", "--set", "benchmark.warm_steps=5", "--set", "train.batch_size=4", "--json"]


@pytest.mark.parametrize("how", ["torchrun", "nproc"])
def test_a_two_process_run_prints_one_json_document_and_writes_one_record(tmp_path, how):
    if how == "torchrun":
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
        res = _cli(RUN, tmp_path, launcher)
    else:
        res = _cli([*RUN, "--nproc", "2"], tmp_path, [sys.executable])
    assert res.returncode == 0, res.stderr[-3000:]
    doc = json.loads(res.stdout)  # one document: a second one would not parse
    records = list(tmp_path.glob("runs/*/record.json"))
    assert len(records) == 1 and doc["out"] == str(records[0].parent)
    record = json.loads(records[0].read_text())
    assert record["provenance"]["processes"] == 2 and record["provenance"]["strategy"] == "ddp"
    assert len(record["steps"]) == 2
    assert not list(tmp_path.glob("runs/*/error*.log"))


def test_under_a_launcher_other_commands_refuse_in_one_line(tmp_path):
    res = run_cli("--results", str(tmp_path), "leaderboard", env={"WORLD_SIZE": "2", "RANK": "0"})
    assert res.returncode == 2 and "only `harness run` takes part" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_a_sweep_gives_each_cuda_cell_its_own_gpus_and_queues_one_that_does_not_fit(monkeypatch):
    """The local executor's device list per cell, by contract (no GPU here: the pool is told there are 3)."""
    from harness.sweeps.executors import DevicePool, Task
    from harness.sweeps.local_executor import LocalExecutor

    ex = LocalExecutor(4)
    ex.gpus = DevicePool(3)
    started: list[Task] = []
    monkeypatch.setattr(ex, "_start", started.append)

    def task(name: str, processes: int) -> Task:
        return Task(id=name, base_id=name, config={"device": "cuda", "train": {"processes": processes}},
                    cell_dir="/nonexistent")

    ex.submit(task("a", 2))
    ex.submit(task("b", 2))  # 1 GPU left: waits
    assert [t.devices for t in started] == [[0, 1]] and ex.running() == ["b"] and ex.capacity() == 2
    ex._running["a"] = type("R", (), {"task": started[0]})()  # as _start records a running cell
    ex._ended("a")
    assert [t.devices for t in started] == [[0, 1], [0, 1]] and ex.gpus.free == [2]
    cpu = Task(id="c", base_id="c", config={"device": "cpu"}, cell_dir="/nonexistent")
    ex.submit(cpu)
    assert started[-1] is cpu and cpu.devices == []


def test_each_rank_takes_its_gpu_from_the_cells_device_list(monkeypatch):
    monkeypatch.setenv("HARNESS_DEVICES", "2,3")
    assert [distributed.device_for("cuda", r) for r in (0, 1)] == ["cuda:2", "cuda:3"]
    assert distributed.device_for("cpu", 1) == "cpu"


def test_any_ranks_failure_fails_the_cell_naming_the_rank():
    from tests.ranks_failing import rank_1_fails  # a light module: the spawned processes import only torch

    with pytest.raises(RuntimeError, match=r"rank 1 of 2 failed: ValueError: boom on purpose"):
        distributed.spawn(2, "cpu", rank_1_fails)

"""The speed bench in CI size: its command runs end to end on the CPU and writes its JSON record."""

from __future__ import annotations

import json

from click.testing import CliRunner

from harness.bench.stages import main


def test_bench_runs_tiny_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    args = ["--model", "random:toy", "--device", "cpu", "--steps", "2", "--batch", "1", "--prompt-len", "6",
            "--resp-len", "5", "--gen-batch", "3", "--new-tokens", "4", "--epochs", "2", "--repeats", "1",
            "--json", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "reference scoring" in result.output and "dpo, 2 epochs" in result.output  # both tables printed
    rec = json.loads(out.read_text())
    st = rec["stages"]
    assert st["model"] == "random:toy" and st["device"] == "cpu" and st["params"] > 0
    # Every stage measured, in (prompt + response) tokens per second, first call apart from warm.
    for key in ("gen_tok_s", "gen_decode_tok_s", "gen_first_call_decode_tok_s", "gen_hf_generate_decode_tok_s",
                "ref_tok_s", "ref_first_call_tok_s", "train_tok_s", "train_step_s", "train_first_step_s"):
        assert st[key] > 0, key
    assert st["gen_new_tokens"] == 3 * 4  # eos off: every row decodes the full length
    assert st["gen_tok_s"] > st["gen_decode_tok_s"]  # prompt tokens count in the stage figure
    assert st["gen_decoder"] == "dynamic"  # auto on a CPU
    assert st["train_peak_gib"] is None and st["train_mfu"] is None  # no GPU: no memory or MFU figures
    # The CPU comparison table still runs and reports its ratios.
    assert set(rec["compare"]) == {"sft", "dpo, 1 epoch", "dpo, 2 epochs", "generate"}
    assert all(v > 0 for v in rec["compare"].values())
    assert "harness.bench" in rec["command"] and rec["torch"]


def test_bench_unknown_preset_is_one_clear_error():
    result = CliRunner().invoke(main, ["--model", "random:nope", "--no-compare", "--stages"])
    assert result.exit_code == 2
    assert "unknown preset 'nope'" in result.output

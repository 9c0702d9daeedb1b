"""The seed papers' training data, named: UltraChat, UltraFeedback, HH-RLHF, Alpaca and AlpacaFarm.

Registered through the ``harness`` entry point group exactly as a third party's datasets would be. Each
loads from the Hugging Face hub; offline, ``--set data.path=FILE_OR_FOLDER`` points it at a local copy
(a file in the hub's format, or a folder holding the hub's files, e.g. a ``huggingface-cli download``
snapshot, whose files named after the split are read).
"""

from __future__ import annotations

import re
from typing import Any

from harness import DatasetSpec, hookimpl

_HH_TURN = re.compile(r"\n\n(Human|Assistant): ")


def hh_messages(transcript: str) -> list[dict[str, str]]:
    """An hh-rlhf transcript (``\\n\\nHuman: ..\\n\\nAssistant: ..``) as a message list."""
    parts = _HH_TURN.split("\n\n" + transcript.lstrip("\n"))
    msgs = []
    for role, content in zip(parts[1::2], parts[2::2], strict=False):
        msgs.append({"role": "user" if role == "Human" else "assistant", "content": content.strip()})
    return msgs


def hh_row(row: dict[str, Any]) -> dict[str, Any]:
    """hh-rlhf's ``chosen``/``rejected`` transcripts -> conversational pairs (the shared turns are the prompt)."""
    out = dict(row)
    for key in ("chosen", "rejected"):
        if isinstance(row.get(key), str):
            out[key] = hh_messages(row[key])
    return out


def alpaca_row(row: dict[str, Any]) -> dict[str, Any]:
    """Alpaca's ``instruction`` (+ ``input``) / ``output`` -> ``prompt`` / ``completion``."""
    instruction, extra = row.get("instruction"), row.get("input")
    out = dict(row)
    if isinstance(instruction, str):
        out["prompt"] = f"{instruction}\n\n{extra}" if isinstance(extra, str) and extra.strip() else instruction
    if isinstance(row.get("output"), str):
        out["completion"] = row["output"]
    return out


DATASETS = [
    DatasetSpec(
        name="ultrachat",
        description="UltraChat 200k (filtered multi-turn chats): SPIN's SFT and self-play data",
        paper="Ding et al. 2023, arXiv 2305.14233; SPIN: Chen et al. 2024, arXiv 2401.01335",
        provides=frozenset({"demonstrations", "prompts"}),
        hub="HuggingFaceH4/ultrachat_200k", split="train_sft", splits={"prompts": "train_gen"},
        columns={"messages": "messages", "prompt": "prompt"}, version="1",
        offline_hint="a JSONL/Parquet of rows with a 'messages' list, or the hub snapshot's data/ folder "
        "(train_sft-*.parquet)",
    ),
    DatasetSpec(
        name="ultrafeedback",
        description="UltraFeedback binarized: chosen responses as demonstrations (GSIL), chosen/rejected pairs (DPO)",
        paper="Cui et al. 2023, arXiv 2310.01377; GSIL: Xiao et al. 2024, arXiv 2410.10093",
        provides=frozenset({"demonstrations", "preferences", "prompts"}),
        hub="HuggingFaceH4/ultrafeedback_binarized", split="train_prefs",
        columns={"prompt": "prompt", "chosen": "chosen", "rejected": "rejected", "messages": "chosen"},
        offline_hint="a JSONL/Parquet with prompt, chosen and rejected message lists, or the hub snapshot's "
        "data/ folder (train_prefs-*.parquet)",
    ),
    DatasetSpec(
        name="hh-rlhf",
        description="Anthropic HH-RLHF helpful/harmless pairs (Human:/Assistant: transcripts as conversations)",
        paper="Bai et al. 2022, arXiv 2204.05862 (AVA's preference data)",
        provides=frozenset({"demonstrations", "preferences", "prompts"}),
        hub="Anthropic/hh-rlhf", split="train", transform=hh_row,
        columns={"messages": "chosen"},
        offline_hint="the hub's train.jsonl.gz unpacked to JSONL (chosen/rejected transcripts)",
    ),
    *[DatasetSpec(
        name=f"hh-rlhf-{part}",
        description=f"Anthropic HH-RLHF, the {part} subset only ({part}-base), as AVA's Anthropic-{part.capitalize()}",
        paper="Bai et al. 2022, arXiv 2204.05862; AVA: Cai et al., arXiv 2411.09341",
        provides=frozenset({"demonstrations", "preferences", "prompts"}),
        hub="Anthropic/hh-rlhf", data_dir=f"{part}-base", split="train", transform=hh_row,
        columns={"messages": "chosen"},
        offline_hint=f"the hub's {part}-base/train.jsonl.gz unpacked to JSONL",
    ) for part in ("harmless", "helpful")],
    DatasetSpec(
        name="alpaca",
        description="Stanford Alpaca 52k instructions and text-davinci-003 outputs",
        paper="Taori et al. 2023, github.com/tatsu-lab/stanford_alpaca",
        provides=frozenset({"demonstrations", "prompts"}),
        hub="tatsu-lab/alpaca", split="train", transform=alpaca_row, chat=True,
        offline_hint="alpaca_data.json (instruction, input, output)",
    ),
    DatasetSpec(
        name="alpacafarm",
        description="AlpacaFarm instructions: the 20k 'unlabeled' prompts for RL (Tajwar et al.'s LLM setting); "
        "--set data.split=sft for its 10k demonstrations",
        paper="Dubois et al. 2023, arXiv 2305.14387; Tajwar et al. 2024, arXiv 2404.14367",
        provides=frozenset({"demonstrations", "prompts"}),
        hub="tatsu-lab/alpaca_farm", config="alpaca_instructions", split="unlabeled",
        splits={"demonstrations": "sft"}, transform=alpaca_row, chat=True,
        offline_hint="alpaca_instructions/unlabeled.json (and sft.json for demonstrations)",
    ),
]


@hookimpl
def register_datasets(register) -> None:  # noqa: ANN001
    """Register ultrachat, ultrafeedback, hh-rlhf (and its harmless/helpful subsets), alpaca and alpacafarm."""
    for spec in DATASETS:
        register(spec)

"""Write preference pairs from the GSM8K `messages` JSONL: chosen = the problem's reference solution,
rejected = the NEXT problem's reference solution (fluent, well-formed, and wrong for this problem: a
mismatched-answer negative). Conversational `prompt` / `chosen` / `rejected` (TRL's shape).

    python suites/data/make_gsm8k_pairs.py suites/data/gsm8k-train-messages.jsonl suites/data/gsm8k-train-pairs.jsonl 64
"""

from __future__ import annotations

import json
import sys


def main(src: str, dst: str, n: int) -> None:
    with open(src, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()][: n + 1]
    with open(dst, "w", encoding="utf-8") as out:
        for row, other in zip(rows, rows[1:], strict=False):
            user, answer = row["messages"][:-1], row["messages"][-1]
            out.write(json.dumps({"prompt": user, "chosen": [answer],
                                  "rejected": [other["messages"][-1]], "answer": row["answer"]}) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))

"""Write GSM8K train problems as a conversational `messages` JSONL (the shape TRL's SFT trainer reads).

The user turn is exactly `gsm8k-chat`'s prompt (so training and evaluation share one format) and the
assistant turn is the reference solution ending in `#### N`; `answer` (the final number) rides along as an
extra column, which a verifiable reward (`reward = "benchmark:gsm8k-chat"`) reads from the prompt's meta.

    python suites/data/make_gsm8k_messages.py plugins/benchmarks/data/gsm8k/train.jsonl.gz \
        suites/data/gsm8k-train-messages.jsonl 256

(the source may be a plain or gzip-compressed JSONL: here the GSM8K copy shipped with the package).
"""

from __future__ import annotations

import gzip
import json
import sys

from alignment_harness_plugins.benchmarks.gsm8k import chat_text, final_answer


def main(src: str, dst: str, n: int) -> None:
    opener = gzip.open if src.endswith(".gz") else open
    with opener(src, "rt", encoding="utf-8") as fh, open(dst, "w", encoding="utf-8") as out:
        for i, line in enumerate(fh):
            if i >= n:
                break
            row = json.loads(line)
            out.write(json.dumps({
                "messages": [{"role": "user", "content": chat_text(row["question"])},
                             {"role": "assistant", "content": row["answer"]}],
                "answer": final_answer(row["answer"]),
            }) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 256)

"""Models and what the harness asks of them: load, encode text, score log-probs.

Owns model loading (``loading``: ``tiny:<preset>``, hub names, local folders, ``.gguf``), the embedded
tiny Llama (``tiny``), text <-> token ids and chat templates (``text``), log-prob batches and their
arithmetic (``logprobs``: ``LogProbBatch``), and the ``LM`` handle benchmarks and samplers use (``lm``).
May import: ``harness.core``.
"""

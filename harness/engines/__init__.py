"""Generation engines behind one interface (see :mod:`harness.engines.base`).

Owns the ``Engine`` protocol (``base``), the factory that builds a registered engine (``factory``), the
``hf`` engine on transformers (``hf``, with ``hf_static``: a static KV cache and CUDA graphs), and the
``openai`` (any OpenAI-compatible endpoint) and ``vllm`` engines. Engines are registered by the built-in
engine plugin (``plugins/engines/builtin.py``) exactly as a third party's would be.
May import: ``harness.core`` (engines take token ids and give completions; they know no model loader).
"""

"""Built-in generation engines (hf, openai, vllm), registered as the ``engines`` plugin."""

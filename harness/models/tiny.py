"""The embedded default model: a tiny random Llama built from a config, with a tokenizer built locally.

``tiny:<preset>`` needs no hub access. The tokenizer is byte-level with no merges (ids 0..255 are the
bytes, so any text round-trips) plus a few special tokens and a small chat template. Weights are
deterministic given the seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SPECIAL_TOKENS = ("<|pad|>", "<|bos|>", "<|eos|>", "<|user|>", "<|assistant|>", "<|system|>")

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{{ eos_token }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@dataclass(frozen=True)
class TinyPreset:
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int = 512


PRESETS: dict[str, TinyPreset] = {
    "nano": TinyPreset(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128),
    "micro": TinyPreset(hidden_size=128, num_hidden_layers=3, num_attention_heads=4, intermediate_size=256),
    "small": TinyPreset(hidden_size=256, num_hidden_layers=4, num_attention_heads=8, intermediate_size=640),
}


def _byte_chars() -> dict[int, str]:
    """The printable character the ByteLevel pre-tokenizer uses for each byte (GPT-2's mapping)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer (ids 0..255 = bytes) with special tokens and a chat template."""
    mapping = _byte_chars()
    vocab = {mapping[b]: b for b in range(256)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<|pad|>",
        bos_token="<|bos|>",
        eos_token="<|eos|>",
        padding_side="left",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(preset: str, *, seed: int = 0, vocab_size: int | None = None) -> LlamaForCausalLM:
    """A randomly initialised Llama of the preset's size, identical for identical seeds."""
    if preset not in PRESETS:
        raise KeyError(preset)
    p = PRESETS[preset]
    tok_vocab = 256 + len(SPECIAL_TOKENS)
    config = LlamaConfig(
        vocab_size=vocab_size or tok_vocab,
        hidden_size=p.hidden_size,
        intermediate_size=p.intermediate_size,
        num_hidden_layers=p.num_hidden_layers,
        num_attention_heads=p.num_attention_heads,
        num_key_value_heads=p.num_attention_heads,
        max_position_embeddings=p.max_position_embeddings,
        pad_token_id=256,
        bos_token_id=257,
        eos_token_id=258,
        tie_word_embeddings=True,
    )
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    finally:
        torch.random.set_rng_state(generator_state)
    model.generation_config.pad_token_id = 256
    return model

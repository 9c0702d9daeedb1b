"""Text <-> token ids, the one place where a chat template is applied."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.core.data import Prompt


class PromptEncoder:
    """Turns prompt and response texts into token ids for one tokenizer.

    With ``chat=True`` (the default when the tokenizer has a chat template) a prompt becomes a user
    turn rendered by the template, ending with the assistant's generation prompt; otherwise it is the
    text encoded as the tokenizer itself encodes raw text (:func:`raw_ids`). A response is its text's ids
    followed by EOS.
    """

    def __init__(self, tokenizer: Any, chat: bool | None = None) -> None:
        self.tokenizer = tokenizer
        self.context: int | None = None  # the model's context in tokens, when known (set by LM)
        has_template = bool(getattr(tokenizer, "chat_template", None))
        self.chat = has_template if chat is None else (chat and has_template)

    def prompt(
        self, text: str, meta: Mapping[str, Any] | None = None, *, system: str | None = None, raw: bool = False
    ) -> Prompt:
        """A :class:`Prompt` for ``text``; ``raw=True`` skips the chat template (few-shot completions)."""
        if self.chat and not raw:
            messages = ([{"role": "system", "content": system}] if system else []) + [
                {"role": "user", "content": text}
            ]
            ids = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=True, return_dict=False
            )
            if isinstance(ids, Mapping):  # some tokenizers return a BatchEncoding regardless
                ids = ids["input_ids"]
        else:
            ids = raw_ids(self.tokenizer, text)
        return Prompt(ids=tuple(int(i) for i in ids), text=text, meta=dict(meta or {}))

    def response(self, text: str, *, eos: bool = True) -> tuple[int, ...]:
        """The token ids of a response text, ending with EOS unless ``eos=False``."""
        ids = list(self.tokenizer.encode(text, add_special_tokens=False))
        if eos and self.tokenizer.eos_token_id is not None:
            ids.append(self.tokenizer.eos_token_id)
        return tuple(int(i) for i in ids)

    def decode(self, ids: Any) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)


def raw_ids(tokenizer: Any, text: str) -> list[int]:
    """Token ids of raw (untemplated) text, with the special tokens the tokenizer itself adds.

    A BOS only where the tokenizer adds one (``add_bos_token``: Llama-2, Gemma); not otherwise: for
    SmolLM2 the BOS is ``<|im_start|>``, a chat-turn marker, and raw text that starts with it reads as
    a turn whose role is the text's first word. lm-eval's HF backend never adds one unless asked
    (``add_bos_token=True``); we follow each tokenizer's own default, as our lm-eval bridge does. Empty text
    becomes the single BOS (or EOS) token, so a response always has a token to be predicted from.
    """
    ids = [int(i) for i in tokenizer.encode(text)]
    if not ids:
        first = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        ids = [int(first)] if first is not None else []
    return ids

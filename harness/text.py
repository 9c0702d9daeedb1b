"""Text <-> token ids, the one place where a chat template is applied."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.data import Prompt


class PromptEncoder:
    """Turns prompt and response texts into token ids for one tokenizer.

    With ``chat=True`` (the default when the tokenizer has a chat template) a prompt becomes a user
    turn rendered by the template, ending with the assistant's generation prompt; otherwise it is the
    BOS token (if any) followed by the text. A response is its text's ids followed by EOS.
    """

    def __init__(self, tokenizer: Any, chat: bool | None = None) -> None:
        self.tokenizer = tokenizer
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
            ids = self.tokenizer.encode(text, add_special_tokens=False)
            bos = self.tokenizer.bos_token_id
            if bos is not None and (not ids or ids[0] != bos):
                ids = [bos, *ids]
        return Prompt(ids=tuple(int(i) for i in ids), text=text, meta=dict(meta or {}))

    def response(self, text: str, *, eos: bool = True) -> tuple[int, ...]:
        """The token ids of a response text, ending with EOS unless ``eos=False``."""
        ids = list(self.tokenizer.encode(text, add_special_tokens=False))
        if eos and self.tokenizer.eos_token_id is not None:
            ids.append(self.tokenizer.eos_token_id)
        return tuple(int(i) for i in ids)

    def decode(self, ids: Any) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

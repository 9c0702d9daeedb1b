"""Generation through any OpenAI-compatible chat endpoint (OpenAI, vLLM/SGLang/llama.cpp servers...).

Standard library only (``urllib.request`` + ``json``). Each prompt becomes one ``POST
{base_url}/chat/completions`` with ``messages`` = ``prompt.meta["messages"]`` when present, else one user
turn holding ``prompt.text``; ``n``, ``temperature``, ``top_p``, ``max_tokens``, ``stop`` and ``seed``
are passed through. Prompts are sent concurrently from a small thread pool; 429 and 5xx answers are
retried a few times with exponential backoff (honouring a short ``Retry-After``). The API key is read
from the environment variable ``api_key_env`` when the request is made; without one no
``Authorization`` header is sent (fine for local servers).

A completion's ``text`` is ``choices[i].message.content``; its ``ids`` are ``tokenizer.encode(text)``
(without special tokens) when a tokenizer is given, else ``()``: the server's token ids are not part of
the chat API, so these are a re-tokenisation, not the sampled ids. ``finish_reason`` is ``"length"``
when the server says ``"length"``, otherwise ``"stop"``. Servers that return fewer than ``n`` choices
(some ignore ``n``) are asked again for the rest.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from harness.core.data import Completion, Prompt
from harness.core.errors import HarnessError

_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_MAX_RETRY_AFTER_S = 10.0


class OpenAIEngine:
    """The :class:`~harness.engines.base.Engine` protocol over an OpenAI-compatible HTTP API."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 60,
        tokenizer: Any = None,
        name: str = "openai",
        max_workers: int = 4,
        max_retries: int = 3,
        backoff_s: float = 0.5,
    ) -> None:
        if not base_url or not isinstance(base_url, str):
            raise HarnessError(f"engine '{name}': base_url must be a URL such as http://127.0.0.1:8000/v1")
        if not model:
            raise HarnessError(f"engine '{name}': give the served model's name (model=...)")
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = float(timeout)
        self.tokenizer = tokenizer
        self.name = name
        self.max_workers = max(1, int(max_workers))
        self.max_retries = max(0, int(max_retries))
        self.backoff_s = float(backoff_s)

    def generate(
        self,
        prompts: Sequence[Prompt],
        *,
        n: int = 1,
        temperature: float = 0.0,
        top_p: float = 1.0,
        max_new_tokens: int = 256,
        stop: Sequence[str] = (),
        seed: int | None = None,
    ) -> list[list[Completion]]:
        """``n`` completions per prompt, in prompt order; one request (or more, if short of n) per prompt."""
        if n < 1:
            raise HarnessError(f"engine '{self.name}': n must be at least 1, got {n}")
        if isinstance(stop, str):
            stop = (stop,)
        settings = {
            "temperature": float(temperature),
            "top_p": float(top_p),
            "max_tokens": int(max_new_tokens),
            "stop": [s for s in stop if s],
            "seed": seed,
        }
        if not prompts:
            return []
        if len(prompts) == 1 or self.max_workers == 1:
            return [self._complete(p, n, settings) for p in prompts]
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(prompts))) as pool:
            futures = [pool.submit(self._complete, p, n, settings) for p in prompts]
            try:
                return [f.result() for f in futures]
            except BaseException:
                for f in futures:
                    f.cancel()
                raise

    # -- internals -------------------------------------------------------------------------------------

    def _messages(self, prompt: Prompt) -> list[dict[str, Any]]:
        messages = prompt.meta.get("messages") if prompt.meta else None
        if messages:
            return list(messages)
        if not prompt.text:
            raise HarnessError(
                f"engine '{self.name}': a prompt has no text and no meta['messages']; this engine sends text"
            )
        return [{"role": "user", "content": prompt.text}]

    def _complete(self, prompt: Prompt, n: int, settings: dict[str, Any]) -> list[Completion]:
        messages = self._messages(prompt)
        out: list[Completion] = []
        for _ in range(n):  # bounded: each round must bring at least one choice
            body: dict[str, Any] = {"model": self.model, "messages": messages, "n": n - len(out)}
            body["temperature"] = settings["temperature"]
            body["top_p"] = settings["top_p"]
            body["max_tokens"] = settings["max_tokens"]
            if settings["stop"]:
                body["stop"] = settings["stop"]
            if settings["seed"] is not None:
                body["seed"] = int(settings["seed"])
            choices = self._post(body).get("choices")
            if not isinstance(choices, list) or not choices:
                raise HarnessError(
                    f"{self.url}: the answer has no 'choices'; is this an OpenAI-compatible API?"
                )
            for choice in sorted(choices, key=lambda c: c.get("index", 0) if isinstance(c, dict) else 0):
                out.append(self._completion(prompt, choice))
            if len(out) >= n:
                break
        return out[:n]

    def _completion(self, prompt: Prompt, choice: Any) -> Completion:
        if not isinstance(choice, dict):
            raise HarnessError(
                f"{self.url}: a choice is not a JSON object; is this an OpenAI-compatible API?"
            )
        message = choice.get("message") or {}
        text = message.get("content") if isinstance(message, dict) else None
        text = text if isinstance(text, str) else ""
        ids: tuple[int, ...] = ()
        if self.tokenizer is not None and text:
            ids = tuple(int(i) for i in _encode(self.tokenizer, text))
        reason = "length" if choice.get("finish_reason") == "length" else "stop"
        return Completion(prompt=prompt, ids=ids, text=text, finish_reason=reason)

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(body).encode("utf-8")
        for attempt in range(self.max_retries + 1):
            request = urllib.request.Request(self.url, data=data, headers=self._headers(), method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read()
            except urllib.error.HTTPError as exc:
                detail = _error_detail(exc)
                if exc.code in _RETRY_STATUS and attempt < self.max_retries:
                    time.sleep(self._delay(attempt, exc.headers.get("Retry-After") if exc.headers else None))
                    continue
                hint = {401: "; set " + self.api_key_env, 403: "; check the key in " + self.api_key_env}.get(
                    exc.code, ""
                )
                tries = f" after {attempt + 1} tries" if attempt else ""
                raise HarnessError(f"{self.url}: HTTP {exc.code}{tries}: {detail}{hint}") from None
            except urllib.error.URLError as exc:
                if isinstance(exc.reason, TimeoutError):
                    raise HarnessError(
                        f"{self.url}: no answer within {self.timeout:g}s; raise timeout"
                    ) from None
                raise HarnessError(
                    f"{self.url}: cannot reach the server ({exc.reason}); is it running, and is base_url right?"
                ) from None
            except TimeoutError:
                raise HarnessError(f"{self.url}: no answer within {self.timeout:g}s; raise timeout") from None
            except OSError as exc:
                raise HarnessError(f"{self.url}: connection failed ({exc}); is the server running?") from None
            try:
                parsed = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                raise HarnessError(
                    f"{self.url}: the answer is not JSON; is this an OpenAI-compatible API?"
                ) from None
            if not isinstance(parsed, dict):
                raise HarnessError(
                    f"{self.url}: the answer is not a JSON object; is this an OpenAI-compatible API?"
                )
            return parsed
        raise AssertionError("unreachable")  # the loop returns or raises

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        delay = self.backoff_s * (2**attempt)
        if retry_after:
            try:
                delay = max(delay, min(float(retry_after), _MAX_RETRY_AFTER_S))
            except ValueError:
                pass
        return delay


def _encode(tokenizer: Any, text: str) -> list[int]:
    try:
        return list(tokenizer.encode(text, add_special_tokens=False))
    except TypeError:  # a tokenizer without that keyword
        return list(tokenizer.encode(text))


def _error_detail(exc: urllib.error.HTTPError) -> str:
    """The server's error message (OpenAI style ``{"error": {"message": ...}}``), else the reason, on one line."""
    try:
        raw = exc.read().decode("utf-8", errors="replace")
    except Exception:  # noqa: BLE001 - the detail is best effort
        raw = ""
    message = ""
    try:
        parsed = json.loads(raw)
        err = parsed.get("error") if isinstance(parsed, dict) else None
        message = err.get("message", "") if isinstance(err, dict) else str(err or "")
    except json.JSONDecodeError:
        message = raw
    message = " ".join(str(message).split())[:200]
    return message or str(exc.reason)

"""The smoke test: one real `/v1/chat/completions` call that a working model must pass.

It checks what a broken deployment gets wrong in practice — the route, the served model
name, the chat template (empty answers) and fp16 overflow (garbage or no emoji) — and
records latency, so the report shows how the served model actually answers.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import emoji
import httpx

from core.contracts import Endpoint, SmokeTestFailed, TransientError

CHAT_PATH = "/v1/chat/completions"
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class SmokeResult:
    prompt: str
    answer: str
    emoji_count: int
    latency_s: float
    url: str


def chat_payload(model: str, prompt: str, max_tokens: int) -> dict[str, object]:
    """Greedy decoding, so the smoke answer is repeatable for a given model version."""
    return {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stream": False,
    }


def run_smoke_test(
    endpoint: Endpoint,
    prompt: str,
    max_tokens: int,
    timeout_s: float,
    headers: Mapping[str, str] | None = None,
) -> SmokeResult:
    """POST the prompt; require HTTP 200 and a non-empty answer containing emoji."""
    url = endpoint.base_url.rstrip("/") + CHAT_PATH
    started = time.perf_counter()
    try:
        response = httpx.post(
            url,
            json=chat_payload(endpoint.model, prompt, max_tokens),
            headers=dict(headers or {}),
            timeout=timeout_s,
        )
    except httpx.TransportError as error:
        raise TransientError(f"smoke test could not reach {url}: {error}") from None
    latency = time.perf_counter() - started
    if response.status_code in RETRYABLE_STATUS:
        raise TransientError(f"smoke test got HTTP {response.status_code} from {url}")
    if response.status_code != 200:
        raise SmokeTestFailed(
            f"smoke test got HTTP {response.status_code} from {url}: {response.text[:300]}"
        )
    answer = extract_answer(response.json(), url)
    count = emoji.emoji_count(answer)
    if count == 0:
        raise SmokeTestFailed(f"smoke answer from {url} contains no emoji: {answer!r}")
    return SmokeResult(prompt=prompt, answer=answer, emoji_count=count, latency_s=latency, url=url)


def extract_answer(body: object, url: str) -> str:
    """`choices[0].message.content`, stripped; anything else is a failed smoke test."""
    try:
        content = body["choices"][0]["message"]["content"]  # type: ignore[index]
    except (KeyError, IndexError, TypeError):
        raise SmokeTestFailed(f"smoke answer from {url} is not a chat completion") from None
    answer = (content or "").strip()
    if not answer:
        raise SmokeTestFailed(f"smoke answer from {url} is empty (chat template or dtype issue?)")
    return answer

"""Prompt moderation: a prompt is checked before any model is called.

Backends (`ARENA_MODERATION`): "local", the embedded default, a short list of rules in a file an
operator can replace (`ARENA_MODERATION_RULES`, see providers/moderation_rules.txt); "openai", the
local rules and then OpenAI's moderation endpoint, in its wire format (POST
`{ARENA_MODERATION_URL}/moderations`); "off".

When the endpoint fails (unreachable, slower than `ARENA_MODERATION_TIMEOUT`, an error status, a
body that cannot be read) the prompt stands on the local rules' verdict and the failure is logged:
an outage of a third party does not close the arena, and the local rules still refuse what no
arena forwards. `ARENA_MODERATION_FAIL_CLOSED` refuses the prompt instead (503, try again).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from asgiref.sync import async_to_sync
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from config.errors import DomainError, Unavailable
from providers.http import client
from providers.models import FlaggedPrompt
from providers.text import fold, visible

logger = logging.getLogger(__name__)

BACKENDS = ("local", "openai", "off")
# What a visitor is told, per category (OpenAI's names, and the local rules' own "spam").
REASONS = {
    "sexual/minors": "sexual content involving minors",
    "sexual": "sexual content",
    "illicit/violent": "instructions for violence or weapons",
    "illicit": "instructions for wrongdoing",
    "violence/graphic": "graphic violence",
    "violence": "violence",
    "hate/threatening": "threatening hate",
    "hate": "hate",
    "harassment/threatening": "threats",
    "harassment": "harassment",
    "self-harm/instructions": "instructions for self-harm",
    "self-harm/intent": "self-harm",
    "self-harm": "self-harm",
    "spam": "spam (a list of links, not a question)",
}


@dataclass(frozen=True)
class Rule:
    category: str
    pattern: re.Pattern[str]


@dataclass(frozen=True)
class Verdict:
    flagged: bool
    categories: tuple[str, ...] = ()
    backend: str = ""  # the backend whose verdict this is: local, openai or off

    @property
    def reason(self) -> str:
        """Why the prompt is refused, in words for the visitor; never the rule that matched."""
        if not self.flagged:
            return ""
        said = [REASONS.get(c, c.replace("/", ", ").replace("-", " ")) for c in self.categories]
        return ", ".join(dict.fromkeys(said)) or "content this arena does not accept"


class ModerationRefused(DomainError):
    code = "prompt_refused"

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(
            f"This prompt was refused by the arena's moderation ({verdict.reason}); no model was asked. "
            "Please write a different prompt."
        )
        self.verdict = verdict


class ModerationUnavailable(Unavailable):
    code = "moderation_unavailable"


class ModerationFailed(Exception):
    """The moderation endpoint gave no verdict; the message is for operators only."""


# --- local rules ---------------------------------------------------------------------------------------


def rules(path: str | Path | None = None) -> tuple[Rule, ...]:
    """The rules of `path` (default: `ARENA_MODERATION_RULES`), read again whenever the file changes."""
    path = Path(path or settings.ARENA_MODERATION_RULES)
    try:
        changed = path.stat().st_mtime_ns
    except OSError as exc:
        raise ImproperlyConfigured(f"ARENA_MODERATION_RULES: cannot read {path}: {exc}") from None
    return _read_rules(str(path), changed)


@functools.lru_cache(maxsize=8)  # compiled once per version of the file, not once per prompt
def _read_rules(path: str, changed: int) -> tuple[Rule, ...]:
    found: list[Rule] = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(None, 1)
        if len(fields) < 2:
            raise ImproperlyConfigured(f"{path}:{number}: a rule is a category, spaces, then a pattern")
        try:
            found.append(Rule(fields[0], re.compile(fields[1], re.IGNORECASE)))
        except re.error as exc:
            raise ImproperlyConfigured(f"{path}:{number}: not a regular expression: {exc}") from None
    return tuple(found)


def check_rules(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    """System check: the rules file reads and compiles, so a broken one stops start-up, not a battle."""
    if settings.ARENA_MODERATION == "off":
        return []
    try:
        rules()
    except ImproperlyConfigured as exc:
        return [
            checks.Error(
                str(exc), hint="Fix the file or point ARENA_MODERATION_RULES at another.", id="providers.E001"
            )
        ]
    return []


def check_local(prompt: str) -> Verdict:
    text = fold(prompt)
    categories = tuple(dict.fromkeys(r.category for r in rules() if r.pattern.search(text)))
    return Verdict(bool(categories), categories, "local")


# --- OpenAI's endpoint ----------------------------------------------------------------------------------


async def check_openai(prompt: str) -> Verdict:
    """OpenAI's verdict on `prompt`; ModerationFailed when there is none.

    The text sent is the prompt without its invisible characters: a zero-width space inside a word
    must not hide the word from moderation while the model still reads it.
    """
    url = settings.ARENA_MODERATION_URL.rstrip("/") + "/moderations"
    key = os.environ.get(settings.ARENA_MODERATION_API_KEY_ENV, "")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    payload = {"model": settings.ARENA_MODERATION_MODEL, "input": visible(prompt)}
    try:
        # One bound on the whole exchange: a server that sends its body slowly is cut off too.
        async with asyncio.timeout(settings.ARENA_MODERATION_TIMEOUT):
            response = await client().post(url, json=payload, headers=headers)
    except TimeoutError:
        raise ModerationFailed(f"{url}: no answer within {settings.ARENA_MODERATION_TIMEOUT:g} s") from None
    except httpx.HTTPError as exc:
        raise ModerationFailed(f"{url}: {type(exc).__name__}: {exc}") from None
    body = _json(response.content)
    if response.status_code != 200:
        error = body.get("error") if isinstance(body, dict) else None
        raise ModerationFailed(f"HTTP {response.status_code} from {url}: {_describe(error, response, key)}")
    return _verdict(body, url)


def _json(content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return None


def _describe(error: Any, response: httpx.Response, key: str) -> str:
    if isinstance(error, dict):
        labels = ", ".join(f"{k}={error[k]}" for k in ("type", "code", "param") if error.get(k))
        text = f"{error.get('message', '')} ({labels})" if labels else str(error.get("message", ""))
    else:
        text = response.text[:300]
    return text.replace(key, "[api key]") if key else text


def _verdict(body: Any, url: str) -> Verdict:
    """The verdict of a 200 answer: `{"id", "model", "results": [{"flagged", "categories", ...}]}`."""
    results = body.get("results") if isinstance(body, dict) else None
    result = results[0] if isinstance(results, list) and results else None
    if not isinstance(result, dict) or not isinstance(result.get("flagged"), bool):
        raise ModerationFailed(f"{url}: unexpected answer: {json.dumps(body)[:300]}")
    named = result.get("categories")
    # A category a model does not score comes as null (the legacy models and "illicit").
    categories = [name for name, on in named.items() if on is True] if isinstance(named, dict) else []
    refused = settings.ARENA_MODERATION_CATEGORIES
    if refused:
        categories = [c for c in categories if c in refused]
        return Verdict(bool(categories), tuple(categories), "openai")
    return Verdict(result["flagged"], tuple(categories), "openai")


# --- the check ------------------------------------------------------------------------------------------


async def check(prompt: str) -> Verdict:
    """The verdict on `prompt` of the configured backend; ModerationUnavailable when it must refuse
    for want of one (`ARENA_MODERATION_FAIL_CLOSED`)."""
    if settings.ARENA_MODERATION == "off":
        return Verdict(False, backend="off")
    verdict = check_local(prompt)
    if verdict.flagged or settings.ARENA_MODERATION == "local":
        return verdict
    try:
        return await check_openai(prompt)
    except ModerationFailed as exc:
        if settings.ARENA_MODERATION_FAIL_CLOSED:
            logger.error("moderation endpoint failed; the prompt was refused: %s", exc)
            raise ModerationUnavailable(
                "Prompts cannot be checked right now, so none is sent to the models; "
                "please try again in a minute."
            ) from None
        logger.warning("moderation endpoint failed; the prompt stands on the local rules: %s", exc)
        return verdict


async def screen(prompt: str, *, visitor: str = "") -> Verdict:
    """Refuse `prompt` when moderation flags it: kept for operators, then ModerationRefused (400).

    `visitor` is the keyed hash that stands for the visitor in the arena's tables.
    """
    verdict = await check(prompt)
    if verdict.flagged:
        await FlaggedPrompt.objects.acreate(
            prompt=prompt, categories=list(verdict.categories), backend=verdict.backend, visitor=visitor
        )
        logger.info("prompt refused: backend=%s categories=%s", verdict.backend, ",".join(verdict.categories))
        raise ModerationRefused(verdict)
    return verdict


def screen_sync(prompt: str, *, visitor: str = "") -> Verdict:
    """`screen` for a synchronous caller (a service that a view runs in a thread)."""
    return async_to_sync(screen)(prompt, visitor=visitor)

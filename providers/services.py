"""Loading the model registry from a file (`manage.py load_models FILE`)."""

from __future__ import annotations

import json
import math
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from django.db import transaction

from providers.models import LLM
from providers.text import drawless_characters, name_key


class ModelFileError(Exception):
    """A models file that cannot be loaded; the message lists every problem found, one per line."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass
class LoadReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


KEYS = (
    "name",
    "display_name",
    "organization",
    "license",
    "backend",
    "base_url",
    "model",
    "api_key_env",
    "temperature",
    "max_tokens",
    "weight",
    "visibility",
    "state",
    "vision",
)
# Keys people reach for when they paste a key into the file; it would then sit in version control.
SECRET_KEYS = frozenset({"api_key", "apikey", "key", "token", "secret", "password", "authorization"})
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
KEY_PREFIXES = ("sk-", "sk_", "hf_", "gsk_", "xai-", "pplx-", "r8_", "AIza")
MAX_TOKENS_LIMIT = 2**31 - 1  # PositiveIntegerField


def parse_models_file(path: Path) -> list[dict[str, Any]]:
    """The entries of a YAML (.yaml, .yml) or JSON (.json) models file.

    The file holds a list of entries, or a mapping whose `models` key holds that list.
    """
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise ModelFileError([f"{path.name}: a models file must end in .yaml, .yml or .json"])
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelFileError([f"cannot read {path}: {exc}"]) from exc
    try:
        data = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ModelFileError([f"{path.name} is not valid {suffix[1:].upper()}: {exc}"]) from exc
    if isinstance(data, dict):
        if set(data) != {"models"}:
            raise ModelFileError([f'{path.name}: expected a list of models, or a mapping with only "models"'])
        data = data["models"]
    if not isinstance(data, list):
        raise ModelFileError([f'{path.name}: expected a list of models, or a mapping with only "models"'])
    return data


def load_models(entries: list[dict[str, Any]]) -> LoadReport:
    """Create or update one registry row per entry, by name; all of them or, on any error, none.

    Every entry is checked before anything is written, and every problem is reported at once. A
    key left out keeps the row's current value (or the default, for a new model), so an outage
    set by the arena or an operator survives reloading a file that does not mention `state`.
    """
    errors: list[str] = []
    seen: dict[str, int] = {}
    looks: dict[str, str] = {}  # name_key -> the first name that looks so
    for position, entry in enumerate(entries, start=1):
        problems = _problems(entry)
        name = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(name, str) and name:
            first = looks.setdefault(name_key(name), name)
            if name in seen:
                problems.append(f"the name is already used by entry {seen[name]}")
            elif first != name:
                problems.append(f'the name can be mistaken for "{first}" (entry {seen[first]})')
            seen.setdefault(name, position)
        label = f'entry {position} ("{name}")' if isinstance(name, str) and name else f"entry {position}"
        errors.extend(f"{label}: {problem}" for problem in problems)
    if not errors:
        others = LLM.objects.exclude(name__in=list(seen)).values_list("name", flat=True)
        taken = {name_key(other): other for other in others}
        for name, position in seen.items():
            other = taken.get(name_key(name))
            if other is not None:
                errors.append(
                    f'entry {position} ("{name}"): the name can be mistaken for the model "{other}"'
                )
    if errors:
        raise ModelFileError(errors)

    report = LoadReport()
    with transaction.atomic():
        existing = {llm.name: llm for llm in LLM.objects.select_for_update().filter(name__in=list(seen))}
        for entry in entries:
            values = _normalised(entry)
            llm = existing.get(values["name"])
            if llm is None:
                LLM.objects.create(**values)
                report.created.append(values["name"])
                continue
            changed = [key for key, value in values.items() if getattr(llm, key) != value]
            if "state" in changed:
                # The reason explained the state being left; it does not describe the new one.
                values["state_reason"] = ""
                changed.append("state_reason")
            if not changed:
                # Not even a save: `updated` keeps its time, so a reload is a true no-op.
                report.unchanged.append(llm.name)
                continue
            for key in changed:
                setattr(llm, key, values[key])
            llm.save(update_fields=[*changed, "updated"])
            report.updated.append(llm.name)
    return report


def _normalised(entry: dict[str, Any]) -> dict[str, Any]:
    values = dict(entry)
    for key in ("temperature", "weight"):
        if key in values:
            values[key] = float(values[key])  # YAML's `1` and the column's `1.0` are the same value
    return values


def _problems(entry: Any) -> list[str]:
    if not isinstance(entry, dict):
        return ["must be a mapping of keys to values"]
    problems: list[str] = []
    for key in entry:
        if str(key).lower() in SECRET_KEYS:
            problems.append(
                f'"{key}" would put a secret in this file: put the key in an environment variable '
                "and give that variable's name as api_key_env"
            )
        elif key not in KEYS:
            problems.append(f'unknown key "{key}"')

    def text(key: str, limit: int, *, required: bool = False) -> str | None:
        if key not in entry:
            if required:
                problems.append(f'"{key}" is required')
            return None
        value = entry[key]
        if not isinstance(value, str):
            problems.append(f'"{key}" must be a string (quote it in YAML), not {value!r}')
        elif required and not value.strip():
            problems.append(f'"{key}" must not be empty')
        elif len(value) > limit:
            problems.append(f'"{key}" is longer than {limit} characters')
        else:
            return value
        return None

    def choice(key: str, choices: list[str], *, required: bool = False) -> str | None:
        value = text(key, 100, required=required)
        if value is not None and value not in choices:
            problems.append(f'"{key}" must be one of {", ".join(choices)}, not "{value}"')
            return None
        return value

    def number(key: str, low: float, high: float) -> None:
        if key not in entry:
            return
        value = entry[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            problems.append(f'"{key}" must be a number, not {value!r}')
        elif not low <= value <= high:
            bounds = f"at least {low:g}" if high == math.inf else f"between {low:g} and {high:g}"
            problems.append(f'"{key}" must be {bounds}, not {value!r}')

    name = text("name", 100, required=True)
    if name is not None and name != name.strip():
        problems.append('"name" must not start or end with spaces')
    elif name is not None and name != unicodedata.normalize("NFKC", name):
        problems.append(f'"name" must be written in its NFKC form: "{unicodedata.normalize("NFKC", name)}"')
    for key, limit in (("display_name", 200), ("organization", 100), ("license", 100)):
        text(key, limit)
    for key in ("name", "display_name", "organization"):
        hidden = drawless_characters(entry[key]) if isinstance(entry.get(key), str) else []
        if hidden:
            problems.append(
                f'"{key}" contains characters that draw nothing ({", ".join(hidden)}): remove them'
            )
    backend = choice("backend", list(LLM.Backend.values), required=True)
    choice("visibility", list(LLM.Visibility.values))
    choice("state", list(LLM.State.values))
    remote = backend in LLM.REMOTE_BACKENDS
    base_url = text("base_url", 500, required=remote)
    text("model", 200, required=remote)
    if base_url:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problems.append(f'"base_url" must be an http:// or https:// address, not "{base_url}"')
        elif parts.username or parts.password:
            problems.append('"base_url" must not carry credentials: give the key through api_key_env')
    env_name = text("api_key_env", 100)
    if env_name is not None and _looks_like_a_key(env_name):
        problems.append(
            '"api_key_env" looks like a key itself: put the key in an environment variable '
            "and give that variable's name here"
        )
    elif env_name is not None and not ENV_NAME.fullmatch(env_name):
        problems.append(
            f'"api_key_env" must be the name of an environment variable (like OPENAI_API_KEY), '
            f'not "{env_name}"'
        )
    if "vision" in entry and not isinstance(entry["vision"], bool):
        problems.append(f'"vision" must be true or false, not {entry["vision"]!r}')
    number("temperature", 0, 2)
    number("weight", 0, math.inf)
    if "max_tokens" in entry:
        value = entry["max_tokens"]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOKENS_LIMIT:
            problems.append(f'"max_tokens" must be a whole number of at least 1, not {value!r}')
    return problems


def _looks_like_a_key(value: str) -> bool:
    """Whether a value given as a variable name is more likely a pasted key.

    Keys carry a vendor prefix, or are long runs of mixed-case letters and digits; variable names
    are short and upper-case by convention.
    """
    if value.startswith(KEY_PREFIXES):
        return True
    return len(value) >= 24 and any(c.islower() for c in value) and any(c.isdigit() for c in value)

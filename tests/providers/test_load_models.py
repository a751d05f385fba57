"""Loading the model registry from a file: all entries or none, and idempotent."""

from __future__ import annotations

import json
import subprocess
import sys
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError

from providers.models import LLM
from providers.services import LoadReport, ModelFileError, load_models, parse_models_file

DEMO_FILE = Path(__file__).resolve().parents[2] / "providers" / "demo_models.yaml"

GPT = {
    "name": "gpt-4o",
    "display_name": "GPT-4o",
    "organization": "OpenAI",
    "license": "Proprietary",
    "backend": "openai-compatible",
    "base_url": "https://api.openai.com/v1",
    "model": "gpt-4o-2024-08-06",
    "api_key_env": "OPENAI_API_KEY",
    "temperature": 0.7,
    "max_tokens": 1024,
    "weight": 1,
}
LOCAL = {
    "name": "qwen-local",
    "backend": "openai-compatible",
    "base_url": "http://vllm:8000/v1",
    "model": "Qwen/Qwen2.5-7B-Instruct",
}
DEMO = {"name": "demo-one", "backend": "demo", "model": "concise"}

BACKENDS = ", ".join(LLM.Backend.values)


def write(tmp_path: Path, entries: Any, name: str = "models.yaml") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(entries) if name.endswith(".json") else yaml.safe_dump(entries))
    return path


def rows() -> list[dict[str, Any]]:
    return list(LLM.objects.order_by("name").values())


def errors_of(entries: list[Any]) -> str:
    with pytest.raises(ModelFileError) as caught:
        load_models(entries)
    return str(caught.value)


# --- loading ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_creates_the_models_of_a_file() -> None:
    report = load_models([GPT, LOCAL, DEMO])
    assert report == LoadReport(created=["gpt-4o", "qwen-local", "demo-one"])
    gpt = LLM.objects.get(name="gpt-4o")
    assert (gpt.base_url, gpt.model, gpt.api_key_env, gpt.weight) == (
        "https://api.openai.com/v1",
        "gpt-4o-2024-08-06",
        "OPENAI_API_KEY",
        1.0,
    )
    local = LLM.objects.get(name="qwen-local")
    assert (local.temperature, local.max_tokens, local.state, local.visibility) == (
        0.7,
        1024,
        "active",
        "public",
    )


@pytest.mark.django_db
def test_loading_the_same_file_twice_changes_nothing(tmp_path: Path) -> None:
    path = write(tmp_path, {"models": [GPT, LOCAL, DEMO]})
    load_models(parse_models_file(path))
    before = rows()

    report = load_models(parse_models_file(path))

    assert report == LoadReport(unchanged=["gpt-4o", "qwen-local", "demo-one"])
    assert rows() == before  # `updated` timestamps included


@pytest.mark.django_db
def test_a_changed_entry_updates_only_its_row() -> None:
    load_models([GPT, LOCAL])
    before = {row["name"]: row for row in rows()}

    report = load_models([{**GPT, "temperature": 0.2, "weight": 3}, LOCAL, DEMO])

    assert report == LoadReport(created=["demo-one"], updated=["gpt-4o"], unchanged=["qwen-local"])
    after = {row["name"]: row for row in rows()}
    assert (after["gpt-4o"]["temperature"], after["gpt-4o"]["weight"]) == (0.2, 3.0)
    assert after["gpt-4o"]["updated"] > before["gpt-4o"]["updated"]
    assert after["qwen-local"] == before["qwen-local"]


@pytest.mark.django_db
def test_a_key_left_out_keeps_the_rows_value() -> None:
    load_models([GPT])
    LLM.objects.get(name="gpt-4o").mark_outage("HTTP 401: Incorrect API key provided.")

    assert load_models([GPT]).unchanged == ["gpt-4o"]
    assert LLM.objects.get(name="gpt-4o").state == LLM.State.OUTAGE


@pytest.mark.django_db
def test_setting_the_state_clears_the_outage_reason() -> None:
    load_models([GPT])
    LLM.objects.get(name="gpt-4o").mark_outage("HTTP 401: Incorrect API key provided.")

    assert load_models([{**GPT, "state": "active"}]).updated == ["gpt-4o"]
    gpt = LLM.objects.get(name="gpt-4o")
    assert (gpt.state, gpt.state_reason) == ("active", "")


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["models.yaml", "models.yml", "models.json"])
def test_yaml_and_json_files_both_load(tmp_path: Path, name: str) -> None:
    as_list = load_models(parse_models_file(write(tmp_path, [GPT, DEMO], name)))
    assert as_list.created == ["gpt-4o", "demo-one"]
    as_mapping = parse_models_file(write(tmp_path, {"models": [GPT, DEMO]}, name))
    assert load_models(as_mapping).unchanged == ["gpt-4o", "demo-one"]


@pytest.mark.django_db
def test_the_demo_file_loads_four_drawable_demo_models() -> None:
    report = load_models(parse_models_file(DEMO_FILE))
    assert len(report.created) == 4
    demos = list(LLM.objects.drawable().filter(name__in=report.created))
    assert len(demos) == 4
    assert all(m.is_demo and m.label.endswith("(demo)") and m.organization == "Arena demo" for m in demos)
    assert len({m.model for m in demos}) == 4


# --- validation ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_unknown_key_is_named_with_its_entry() -> None:
    message = errors_of([DEMO, LOCAL, {**GPT, "temprature": 0.5}])
    assert message == 'entry 3 ("gpt-4o"): unknown key "temprature"'


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["api_key", "API_KEY", "token"])
def test_a_key_written_into_the_file_is_refused(key: str) -> None:
    message = errors_of([{**GPT, key: "sk-proj-abcdef0123456789"}])
    assert "api_key_env" in message
    assert "sk-proj-abcdef0123456789" not in message


@pytest.mark.django_db
@pytest.mark.parametrize(
    "value", ["sk-proj-abcdef0123456789", "hf_AbCdEf0123456789AbCdEf0123", "a9Xk2Lq8Zr4Tb7Wn3Vm6Yp1Hs5Jd0"]
)
def test_a_key_given_as_api_key_env_is_refused_without_repeating_it(value: str) -> None:
    message = errors_of([{**GPT, "api_key_env": value}])
    assert "looks like a key" in message
    assert value not in message


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ({"backend": "demo"}, '"name" is required'),
        ({"name": "x"}, '"backend" is required'),
        ({"name": "x", "backend": "openai-compatible", "model": "m"}, '"base_url" is required'),
        (
            {"name": "x", "backend": "openai-compatible", "base_url": "https://a.example/v1"},
            '"model" is required',
        ),
        (
            {"name": "x", "backend": "openai-compatible", "base_url": "", "model": "m"},
            '"base_url" must not be empty',
        ),
    ],
)
def test_missing_required_keys_are_reported(entry: dict[str, Any], words: str) -> None:
    assert words in errors_of([entry])


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"temperature": 2.5}, '"temperature" must be between 0 and 2'),
        ({"temperature": -0.1}, '"temperature" must be between 0 and 2'),
        ({"temperature": "hot"}, '"temperature" must be a number'),
        ({"temperature": True}, '"temperature" must be a number'),
        ({"max_tokens": 0}, '"max_tokens" must be a whole number of at least 1'),
        ({"max_tokens": 1.5}, '"max_tokens" must be a whole number'),
        ({"max_tokens": "100"}, '"max_tokens" must be a whole number'),
        ({"weight": -1}, '"weight" must be at least 0'),
        ({"weight": float("nan")}, '"weight" must be a number'),
        ({"base_url": "ftp://files.example.org/v1"}, '"base_url" must be an http:// or https:// address'),
        ({"base_url": "api.openai.com/v1"}, '"base_url" must be an http:// or https:// address'),
        ({"base_url": "https://user:pw@api.example.org/v1"}, '"base_url" must not carry credentials'),
        ({"backend": "carrier-pigeon"}, f'"backend" must be one of {BACKENDS}'),
        ({"visibility": "secret"}, '"visibility" must be one of public, private'),
        ({"state": "dead"}, '"state" must be one of active, outage, retired'),
        ({"name": ""}, '"name" must not be empty'),
        ({"name": "x" * 101}, '"name" is longer than 100 characters'),
        ({"name": " gpt-4o"}, '"name" must not start or end with spaces'),
        ({"name": 2024}, '"name" must be a string (quote it in YAML)'),
        ({"model": 3.5}, '"model" must be a string'),
        ({"api_key_env": "OPENAI-KEY"}, '"api_key_env" must be the name of an environment variable'),
    ],
)
def test_bad_values_are_reported(change: dict[str, Any], words: str) -> None:
    assert words in errors_of([{**GPT, **change}])


@pytest.mark.django_db
def test_a_name_used_twice_is_reported() -> None:
    assert (
        errors_of([GPT, DEMO, {**GPT, "weight": 2}])
        == 'entry 3 ("gpt-4o"): the name is already used by entry 1'
    )


@pytest.mark.django_db
def test_an_entry_that_is_not_a_mapping_is_reported() -> None:
    assert errors_of([GPT, "gpt-4o"]) == "entry 2: must be a mapping of keys to values"


@pytest.mark.django_db
def test_every_problem_is_reported_at_once() -> None:
    message = errors_of([{**DEMO, "weight": -1}, GPT, {"name": "bad", "backend": "nope", "colour": "red"}])
    assert message.splitlines() == [
        'entry 1 ("demo-one"): "weight" must be at least 0, not -1',
        'entry 3 ("bad"): unknown key "colour"',
        f'entry 3 ("bad"): "backend" must be one of {BACKENDS}, not "nope"',
    ]


@pytest.mark.django_db
def test_a_bad_third_entry_leaves_the_registry_untouched() -> None:
    load_models([GPT])
    before = rows()
    with pytest.raises(ModelFileError, match=r'entry 3 \("broken"\)'):
        load_models(
            [{**GPT, "weight": 5}, DEMO, {"name": "broken", "backend": "demo", "weight": "lots"}, LOCAL]
        )
    assert rows() == before


# --- reading files -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("models.yaml", "models: [unclosed", "is not valid YAML"),
        ("models.json", "[{]", "is not valid JSON"),
        ("models.yaml", "", "expected a list of models"),
        ("models.yaml", "name: gpt-4o\nbackend: demo\n", 'or a mapping with only "models"'),
        ("models.yaml", "models: {name: gpt-4o}", "expected a list of models"),
        ("models.toml", "[models]", "must end in .yaml, .yml or .json"),
    ],
)
def test_a_file_that_is_not_a_list_of_models_is_refused(
    tmp_path: Path, name: str, content: str, words: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ModelFileError, match=words.replace("(", r"\(").replace(".", r"\.")):
        parse_models_file(path)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="cannot read"):
        parse_models_file(tmp_path / "absent.yaml")


# --- the command ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_command_loads_a_file_and_prints_a_summary(tmp_path: Path) -> None:
    path = write(tmp_path, [GPT, DEMO])
    out = StringIO()
    call_command("load_models", str(path), stdout=out)
    assert out.getvalue().strip() == f"{path}: 2 created, 0 updated, 0 unchanged"

    out = StringIO()
    call_command("load_models", str(path), stdout=out)
    assert out.getvalue().strip() == f"{path}: 0 created, 0 updated, 2 unchanged"


@pytest.mark.django_db
def test_the_command_fails_with_the_reasons_and_loads_nothing(tmp_path: Path) -> None:
    path = write(tmp_path, [DEMO, LOCAL, {**GPT, "temprature": 0.5}])
    with pytest.raises(CommandError) as caught:
        call_command("load_models", str(path), stdout=StringIO())
    assert 'entry 3 ("gpt-4o"): unknown key "temprature"' in str(caught.value)
    assert "nothing loaded" in str(caught.value)
    assert not LLM.objects.filter(name__in=["demo-one", "qwen-local", "gpt-4o"]).exists()


@pytest.mark.django_db
def test_the_command_fails_on_an_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="cannot read"):
        call_command("load_models", str(tmp_path / "absent.yaml"), stdout=StringIO())


def test_the_command_exits_non_zero_on_a_bad_file(tmp_path: Path) -> None:
    # Through manage.py, as `make run` calls it: the exit status is what a script sees.
    root = Path(__file__).resolve().parents[2]
    path = write(tmp_path, [{"name": "x", "backend": "nope"}])
    result = subprocess.run(
        [sys.executable, "manage.py", "load_models", str(path)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert 'entry 1 ("x"): "backend" must be one of' in result.stderr

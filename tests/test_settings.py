"""Production settings: clean under `check --deploy`, loud when a required value is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "k" * 20 + "Zq8-vR3_pL9!mN2@xT7#bW5$hJ4%cF6^gD1&",
    "ALLOWED_HOSTS": "arena.example.org",
    "DATABASE_URL": "sqlite:////tmp/arena-deploy-check.sqlite3",
    "FIELD_ENCRYPTION_KEY": "mU3bXvU8QxZ1n0m3eYkq9wz7c2Wv6bq1Hn8YtGfVd4Q=",
}


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in PRODUCTION}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_values_pass_the_deploy_check() -> None:
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key() -> None:
    env = {k: v for k, v in PRODUCTION.items() if k != "SECRET_KEY"}
    result = manage("check", **env)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_production_refuses_a_weak_secret_key() -> None:
    result = manage("check", **{**PRODUCTION, "SECRET_KEY": "short"})
    assert result.returncode != 0
    assert "at least 50 characters" in result.stderr


def test_production_refuses_to_start_without_an_encryption_key() -> None:
    env = {k: v for k, v in PRODUCTION.items() if k != "FIELD_ENCRYPTION_KEY"}
    result = manage("check", **env)
    assert result.returncode != 0
    assert "FIELD_ENCRYPTION_KEY is required" in result.stderr


def test_a_number_in_the_environment_is_read_as_python_reads_it_or_refused() -> None:
    show = "from django.conf import settings; print(settings.ARENA_READING_CHARS_PER_SECOND)"
    result = manage("shell", "-c", show, ARENA_READING_CHARS_PER_SECOND="1e9")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "1000000000.0"  # django-environ alone read "1e9" as 19
    result = manage("check", ARENA_READING_CHARS_PER_SECOND="fast")
    assert result.returncode != 0
    assert "ARENA_READING_CHARS_PER_SECOND must be a number, not 'fast'" in result.stderr

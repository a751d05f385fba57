"""A fresh clone's `make test` runs what it can and says loudly what it could not."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pytest_in(folder: Path) -> subprocess.CompletedProcess[str]:
    """pytest on the tests in `folder`, with the summary plugin (tests/skips.py) and nothing else."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.skips", "-p", "no:cacheprovider", "-p", "no:django"],
        cwd=folder,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_summary_names_every_skipped_test_with_its_reason_and_remedy(tmp_path: Path) -> None:
    (tmp_path / "test_sample.py").write_text(
        "import pytest\n"
        "def test_runs(): pass\n"
        "@pytest.mark.skipif(True, reason='/usr/bin/chromium is missing')\n"
        "def test_in_a_browser(): pass\n"
        "@pytest.mark.skipif(True, reason='/usr/bin/chromium is missing')\n"
        "def test_in_another_browser(): pass\n"
        "def test_with_redis(): pytest.skip('needs REDIS_URL')\n"
    )
    run = pytest_in(tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 TESTS DID NOT RUN" in run.stdout
    assert "2 skipped: /usr/bin/chromium is missing" in run.stdout
    assert "apt-get install chromium" in run.stdout
    assert "1 skipped: needs REDIS_URL" in run.stdout


def test_the_summary_stays_quiet_when_nothing_was_skipped(tmp_path: Path) -> None:
    (tmp_path / "test_sample.py").write_text("def test_runs(): pass\n")
    run = pytest_in(tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "DID NOT RUN" not in run.stdout


def test_the_reference_data_lives_in_the_repository_with_its_licence() -> None:
    data = ROOT / "tests" / "data" / "llmfao"
    with open(data / "llmfao.csv", newline="") as f:
        assert sum(1 for _ in csv.DictReader(f)) == 8931
    assert "Apache License" in (data / "LICENSE").read_text()
    assert "github.com/dustalov/evalica" in (ROOT / "tests" / "data" / "README.md").read_text()

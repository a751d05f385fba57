from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from arena.models import Battle, Vote
from leaderboard.dumps import export_lines, import_battles
from leaderboard.rating import BattleFileError
from providers.models import LLM

pytestmark = pytest.mark.django_db

RECORDS = [
    {
        "model_a": "gpt-4",
        "model_b": "llama-2",
        "winner": "model_a",
        "tstamp": 1700000000.0,
        "anony": True,
        "language": "English",
        "turn": 1,
        "conv_metadata": {
            "sum_assistant_a_tokens": 120,
            "sum_assistant_b_tokens": 80,
            "header_count_a": {"h1": 1},
            "header_count_b": {"h1": 0},
            "list_count_a": {"ordered": 2, "unordered": 0},
            "list_count_b": {"ordered": 0, "unordered": 1},
            "bold_count_a": {"**": 1, "__": 0},
            "bold_count_b": {"**": 0, "__": 0},
        },
    },
    {"model_a": "llama-2", "model_b": "claude-2", "winner": "tie (bothbad)", "anony": True, "turn": 3},
    {"model_a": "claude-2", "model_b": "gpt-4", "winner": "tie", "anony": False, "language": "German"},
]


def write(tmp_path: Path, records: list[dict], name: str = "battles.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(records))
    return path


def test_it_imports_a_public_dump_creating_models_that_are_never_drawn(tmp_path: Path) -> None:
    report = import_battles(write(tmp_path, RECORDS))

    assert report.battles == 3 and sorted(report.models_created) == ["claude-2", "gpt-4", "llama-2"]
    assert not LLM.objects.drawable().exists()
    first = Vote.objects.get(battle__model_a__name="gpt-4")
    assert first.winner == "a" and first.language == "en" and first.battle.mode == Battle.Mode.ANONYMOUS
    assert first.conv_metadata["sum_assistant_a_tokens"] == 120
    assert first.created.timestamp() == 1700000000.0
    assert Vote.objects.get(winner="bothbad").multi_turn is True
    assert Vote.objects.get(winner="tie").battle.mode == Battle.Mode.NAMED


def test_a_bad_record_names_its_place_and_imports_nothing(tmp_path: Path) -> None:
    bad = [*RECORDS, {"model_a": "x", "model_b": "y", "winner": "model_c"}]
    with pytest.raises(BattleFileError, match="record 4: unknown winner"):
        import_battles(write(tmp_path, bad))
    assert not Vote.objects.exists() and not LLM.objects.exists()
    with pytest.raises(CommandError, match="record 4"):
        call_command("import_battles", str(write(tmp_path, bad)))


def test_export_writes_the_same_format_back(tmp_path: Path) -> None:
    import_battles(write(tmp_path, RECORDS))
    lines = [json.loads(line) for line in export_lines(Vote.objects.all())]

    assert [(r["model_a"], r["model_b"], r["winner"], r["anony"]) for r in lines] == [
        (r["model_a"], r["model_b"], r["winner"], r["anony"]) for r in RECORDS
    ]
    assert lines[0]["conv_metadata"] == RECORDS[0]["conv_metadata"] and lines[1]["turn"] == 2


def test_the_command_reports_what_it_imported(tmp_path: Path) -> None:
    out = StringIO()
    call_command("import_battles", str(write(tmp_path, RECORDS)), stdout=out)
    assert "Imported 3 battles; 3 new models" in out.getvalue()

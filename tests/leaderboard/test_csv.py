"""The board's CSV download: text that people chose never reaches a spreadsheet as a formula."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

import pytest
from django.test import Client

from leaderboard.models import Rating, Snapshot
from providers.models import LLM

pytestmark = pytest.mark.django_db

FORMULAS = ['=HYPERLINK("http://x","click")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)", "\t=1", "\r=1"]


def rows(client: Client, snapshot: Snapshot) -> list[list[str]]:
    response = client.get(f"/api/v1/leaderboard/snapshots/{snapshot.pk}/csv")
    assert response["Content-Type"] == "text/csv"
    return list(csv.reader(io.StringIO(response.content.decode(), newline="")))


def test_cells_that_would_run_as_formulas_are_quoted(make_llm: Callable[..., LLM], client: Client) -> None:
    snapshot = Snapshot.objects.create(votes=10, votes_digest="0" * 64)
    for rank, text in enumerate(FORMULAS, start=1):
        llm = make_llm(name=text, organization=text, license=text)
        Rating.objects.create(
            snapshot=snapshot, llm=llm, rating=1000 + rank, ci_lower=990, ci_upper=1010, rank=rank, votes=5
        )
    _, *body = rows(client, snapshot)
    assert len(body) == len(FORMULAS)
    for (_, name, rating, *_, organization, license_, _), text in zip(body, FORMULAS, strict=True):
        assert name == organization == license_ == f"'{text}"
        assert float(rating) > 1000  # figures stay figures


def test_ordinary_names_are_written_as_they_are(make_llm: Callable[..., LLM], client: Client) -> None:
    snapshot = Snapshot.objects.create(votes=10, votes_digest="0" * 64)
    llm = make_llm(name="alpha-chat", organization="Alpha Labs", license="Apache-2.0")
    Rating.objects.create(
        snapshot=snapshot, llm=llm, rating=1012.5, ci_lower=-3.25, ci_upper=1020, rank=1, votes=5
    )
    [_, row] = rows(client, snapshot)
    assert row == [
        "1",
        "alpha-chat",
        "1012.50",
        "-3.25",
        "1020.00",
        "5",
        "False",
        "Alpha Labs",
        "Apache-2.0",
        "",
    ]

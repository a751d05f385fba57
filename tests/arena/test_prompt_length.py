"""The prompt's length limit over the API: the page counts as the server does (code points), and
the server refuses a prompt over the limit with a reason, storing nothing."""

from __future__ import annotations

import httpx
from django.conf import settings

from arena.models import Battle, Turn
from providers.models import LLM
from tests.arena import test_api
from tests.arena.test_api import assert_error, start, stream

# The battle API's fixtures: two models behind the fake OpenAI upstream, and a client of uvicorn.
models = test_api.models
web = test_api.web


def test_a_prompt_of_exactly_the_limit_is_accepted_whole(web: httpx.Client, models: tuple[LLM, LLM]) -> None:
    limit = settings.ARENA_PROMPT_MAX_CHARS
    battle_id = start(web, prompt="x" * limit)
    assert len(Turn.objects.get(battle_id=battle_id).prompt) == limit


def test_a_prompt_over_the_limit_is_refused_with_its_length_and_the_limit(
    web: httpx.Client, models: tuple[LLM, LLM]
) -> None:
    limit = settings.ARENA_PROMPT_MAX_CHARS
    for length in (limit + 1, 20_000):
        response = web.post("/api/v1/battles/", json={"prompt": "x" * length})
        assert_error(response, 400, f"The prompt is {length} characters long; the limit is {limit}.")
        assert response.json()["code"] == "prompt_too_long"
    assert Battle.objects.count() == 0


def test_characters_are_counted_as_code_points_as_the_page_counts_them(
    web: httpx.Client, models: tuple[LLM, LLM]
) -> None:
    # Each emoji is two UTF-16 units in the browser and four bytes in UTF-8: one character to both.
    limit = settings.ARENA_PROMPT_MAX_CHARS
    battle_id = start(web, prompt="\N{GRINNING FACE}" * limit)
    assert len(Turn.objects.get(battle_id=battle_id).prompt) == limit
    too_long = web.post("/api/v1/battles/", json={"prompt": "\N{GRINNING FACE}" * (limit + 1)})
    assert_error(too_long, 400, f"is {limit + 1} characters long")


def test_a_follow_up_over_the_limit_is_refused_and_the_battle_keeps_one_turn(
    web: httpx.Client, models: tuple[LLM, LLM]
) -> None:
    limit = settings.ARENA_PROMPT_MAX_CHARS
    battle_id = start(web)
    stream(web, battle_id)
    response = web.post(f"/api/v1/battles/{battle_id}/turns/", json={"prompt": "y" * (limit + 1)})
    assert_error(response, 400, f"the limit is {limit}")
    assert Turn.objects.filter(battle_id=battle_id).count() == 1
    # The battle goes on: a follow-up within the limit is taken.
    accepted = web.post(f"/api/v1/battles/{battle_id}/turns/", json={"prompt": "y" * limit})
    assert accepted.status_code == 201, accepted.text
    assert Turn.objects.filter(battle_id=battle_id).count() == 2

"""Public model names: NFKC, nothing hidden, and none that can be mistaken for another model's."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from providers.models import LLM
from providers.services import ModelFileError, load_models
from tests.providers.conftest import Personas, make_variant, post, submit
from tests.upstream import FakeOpenAI

pytestmark = pytest.mark.django_db

VARIANTS = "/api/v1/provider/variants/"


@pytest.fixture
def variant(personas: Personas, openai_upstream: FakeOpenAI, client: Client) -> LLM:
    response = submit(client, personas.owner, openai_upstream)
    assert response.status_code == 201, response.content
    return LLM.objects.get(pk=response.json()["id"])


@pytest.fixture
def concise(make_llm: Any) -> LLM:
    return make_llm(name="demo-concise", display_name="Concise", organization="Arena demo")


def publish(client: Client, personas: Personas, variant: LLM, name: str) -> Any:
    return post(client, personas.owner, f"{VARIANTS}{variant.pk}/publish/", {"name": name})


def refused(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["code"] == code, body
    return body


def test_a_name_with_a_zero_width_space_is_refused_with_the_character(
    personas: Personas, variant: LLM, concise: LLM, client: Client
) -> None:
    body = refused(publish(client, personas, variant, "demo-concise\u200b"), 400, "invalid_name")
    assert "U+200B" in body["detail"]
    for hidden in ("demo\u2063-x", "\u202edemo-x", "demo-x\ufe0f", "demo\U000e0041-x"):
        refused(publish(client, personas, variant, hidden), 400, "invalid_name")
    variant.refresh_from_db()
    assert variant.published_at is None


def test_a_fullwidth_copy_of_a_name_is_that_name_and_so_taken(
    personas: Personas, variant: LLM, concise: LLM, client: Client
) -> None:
    body = refused(publish(client, personas, variant, "ｄｅｍｏ-ｃｏｎｃｉｓｅ"), 409, "name_taken")
    assert "'demo-concise' is already used" in body["detail"]


@pytest.mark.parametrize(
    "lookalike",
    [
        "dеmо-cоncisе",  # Cyrillic е and о
        "demo-conc\u0456se",  # Cyrillic і
        "DEMO-Concise",
        "demo_concise",
        "demo.concise",
        "dem\u03bf-concise",  # Greek ο
    ],
)
def test_a_lookalike_of_another_models_name_is_refused_and_names_it(
    personas: Personas, variant: LLM, concise: LLM, client: Client, lookalike: str
) -> None:
    body = refused(publish(client, personas, variant, lookalike), 400, "confusable_name")
    assert "'demo-concise'" in body["detail"] and "mistaken" in body["detail"]
    variant.refresh_from_db()
    assert variant.published_at is None and variant.name.startswith("private/")


def test_a_lookalike_of_another_models_label_is_refused(
    personas: Personas, variant: LLM, concise: LLM, client: Client
) -> None:
    body = refused(publish(client, personas, variant, "concise"), 400, "confusable_name")
    assert "'Concise'" in body["detail"]


def test_a_lookalike_of_a_model_that_is_not_public_is_refused_without_naming_it(
    personas: Personas, variant: LLM, make_llm: Any, client: Client
) -> None:
    make_llm(name="secret-model", display_name="", visibility=LLM.Visibility.PRIVATE)
    body = refused(publish(client, personas, variant, "Secret_Model"), 400, "confusable_name")
    assert "secret" not in body["detail"].lower().replace("secret_model", "")


def test_a_name_is_published_in_its_nfkc_form(personas: Personas, variant: LLM, client: Client) -> None:
    response = publish(client, personas, variant, "ｆａｌｃｏｎ-８")
    assert response.status_code == 200, response.content
    assert response.json()["name"] == "falcon-8"
    assert LLM.objects.get(pk=variant.pk).name == "falcon-8"


def test_a_lookalike_of_the_private_prefix_is_refused(
    personas: Personas, variant: LLM, client: Client
) -> None:
    for name in ("Private/acme/x", "priv\u0430te/acme/x"):  # Cyrillic а
        refused(publish(client, personas, variant, name), 400, "invalid_name")


def test_publishing_under_the_codename_checks_it_like_any_name(
    personas: Personas, concise: LLM, client: Client
) -> None:
    assert personas.owner.organization is not None
    variant = make_variant(personas.owner.organization, "Demo_Concise")
    refused(post(client, personas.owner, f"{VARIANTS}{variant.pk}/publish/"), 400, "confusable_name")


def test_a_codename_with_hidden_or_lookalike_letters_is_refused_at_submission(
    personas: Personas, openai_upstream: FakeOpenAI, client: Client
) -> None:
    for codename in ("falcon\u200b-7", "fаlcon-7", "ｆalcon-7"):
        response = submit(client, personas.owner, openai_upstream, codename=codename)
        assert response.status_code == 400, response.content
        assert "codename" in response.json()["errors"]
    assert not LLM.objects.exists()


# --- the registry file --------------------------------------------------------------------------------

ENTRY = {"backend": "demo", "model": "concise"}


def errors_of(entries: list[dict[str, Any]]) -> str:
    with pytest.raises(ModelFileError) as caught:
        load_models(entries)
    assert not LLM.objects.filter(name__startswith="demo").exclude(name="demo-concise").exists()
    return str(caught.value)


def test_the_registry_refuses_hidden_characters_in_what_people_read() -> None:
    errors = errors_of(
        [
            {**ENTRY, "name": "demo-a\u200b"},
            {**ENTRY, "name": "demo-b", "display_name": "B\u202e"},
            {**ENTRY, "name": "demo-c", "organization": "\u2063Org"},
        ]
    )
    assert '"name" contains characters that draw nothing (U+200B)' in errors
    assert '"display_name" contains characters that draw nothing (U+202E)' in errors
    assert '"organization" contains characters that draw nothing (U+2063)' in errors


def test_the_registry_asks_for_names_in_nfkc_form() -> None:
    assert '"name" must be written in its NFKC form: "demo-a"' in errors_of([{**ENTRY, "name": "ｄｅｍｏ-a"}])


def test_the_registry_refuses_two_entries_that_can_be_mistaken_for_each_other() -> None:
    errors = errors_of([{**ENTRY, "name": "demo-a"}, {**ENTRY, "name": "DEMO_A"}])
    assert 'entry 2 ("DEMO_A"): the name can be mistaken for "demo-a" (entry 1)' in errors


def test_the_registry_refuses_a_lookalike_of_a_model_it_already_holds(concise: LLM) -> None:
    errors = errors_of([{**ENTRY, "name": "demo-cоncise"}])  # Cyrillic о
    assert 'entry 1 ("demo-cоncise"): the name can be mistaken for the model "demo-concise"' in errors
    # The model itself, reloaded, is not its own lookalike.
    assert load_models([{**ENTRY, "name": "demo-concise"}]).unchanged == ["demo-concise"]

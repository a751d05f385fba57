"""The provider API against each persona, its validation, its probe, its keys and its limits."""

from __future__ import annotations

import logging
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client

from providers import crypto
from providers.keys import api_key_revoke
from providers.models import LLM, APIKeyEvent, Membership, OrganizationAPIKey
from tests.providers.conftest import Persona, Personas, get, post, submit, variant_body
from tests.upstream import Behaviour, FakeOpenAI

pytestmark = pytest.mark.django_db

VARIANTS = "/api/v1/provider/variants/"


@pytest.fixture
def variant_of_a(personas: Personas, openai_upstream: FakeOpenAI, client: Client) -> LLM:
    response = submit(client, personas.owner, openai_upstream)
    assert response.status_code == 201, response.content
    return LLM.objects.get(pk=response.json()["id"])


def assert_error(response: Any, status: int, words: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert {"detail", "code"} <= set(body)
    assert words.lower() in str(body).lower(), body
    return body


# --- every endpoint against every persona ---------------------------------------------------------


def test_an_anonymous_visitor_is_told_to_send_a_key_on_every_provider_endpoint(
    personas: Personas, variant_of_a: LLM, client: Client
) -> None:
    anonymous = personas.anonymous
    for response in (
        get(client, anonymous, VARIANTS),
        post(client, anonymous, VARIANTS, {"codename": "x"}),
        get(client, anonymous, f"{VARIANTS}{variant_of_a.pk}/"),
        post(client, anonymous, f"{VARIANTS}{variant_of_a.pk}/publish/"),
        post(client, anonymous, f"{VARIANTS}{variant_of_a.pk}/retire/"),
    ):
        body = assert_error(response, 401, "Api-Key <key>")
        assert body["code"] == "not_authenticated"
        assert response["WWW-Authenticate"] == "Api-Key"
    variant_of_a.refresh_from_db()
    assert variant_of_a.published_at is None and variant_of_a.retired_at is None


def test_the_owner_and_the_teammate_both_see_their_organisations_variant(
    personas: Personas, variant_of_a: LLM, client: Client
) -> None:
    for persona in (personas.owner, personas.teammate):
        listed = get(client, persona, VARIANTS)
        assert listed.status_code == 200
        assert [v["id"] for v in listed.json()] == [variant_of_a.pk]
        detail = get(client, persona, f"{VARIANTS}{variant_of_a.pk}/")
        assert detail.status_code == 200
        assert detail.json()["codename"] == "falcon-7" and detail.json()["status"] == "testing"


def test_another_organisation_sees_nothing_of_it_and_cannot_touch_it(
    personas: Personas, variant_of_a: LLM, client: Client
) -> None:
    outsider = personas.outsider
    assert get(client, outsider, VARIANTS).json() == []
    for response in (
        get(client, outsider, f"{VARIANTS}{variant_of_a.pk}/"),
        post(client, outsider, f"{VARIANTS}{variant_of_a.pk}/publish/", {"name": "stolen"}),
        post(client, outsider, f"{VARIANTS}{variant_of_a.pk}/retire/"),
    ):
        # The same answer as for an id that does not exist: B learns nothing about A's variants.
        assert_error(response, 404, "no such variant")
    assert_error(get(client, outsider, f"{VARIANTS}999999/"), 404, "no such variant")
    variant_of_a.refresh_from_db()
    assert variant_of_a.published_at is None and variant_of_a.retired_at is None


def test_a_teammate_may_submit_but_only_an_owner_may_publish_or_retire(
    personas: Personas, variant_of_a: LLM, client: Client, openai_upstream: FakeOpenAI
) -> None:
    assert submit(client, personas.teammate, openai_upstream, codename="teammates-try").status_code == 201
    for action in ("publish", "retire"):
        body = assert_error(
            post(client, personas.teammate, f"{VARIANTS}{variant_of_a.pk}/{action}/"), 403, "owner"
        )
        assert body["code"] == "permission_denied"
    assert post(client, personas.owner, f"{VARIANTS}{variant_of_a.pk}/publish/").status_code == 200


def test_each_organisation_submits_into_its_own_space(
    personas: Personas, variant_of_a: LLM, client: Client, openai_upstream: FakeOpenAI
) -> None:
    # The same codename in another organisation is another variant.
    response = submit(client, personas.outsider, openai_upstream, codename="falcon-7")
    assert response.status_code == 201
    assert LLM.objects.get(pk=response.json()["id"]).owner == personas.outsider.organization
    assert [v["id"] for v in get(client, personas.owner, VARIANTS).json()] == [variant_of_a.pk]


def test_the_public_endpoints_answer_everyone_alike(
    personas: Personas, variant_of_a: LLM, client: Client
) -> None:
    for path in (
        "/api/v1/models/",
        "/api/v1/leaderboard/",
        "/api/v1/leaderboard/snapshots/",
        "/api/v1/testing-ledger/",
    ):
        bodies = []
        for persona in personas.all():
            response = get(client, persona, path)
            assert response.status_code == 200, (path, persona.name)
            bodies.append(response.json())
            assert "falcon-7" not in response.content.decode()
        assert all(body == bodies[0] for body in bodies), path


# --- submitting ----------------------------------------------------------------------------------------


def test_a_submission_is_probed_and_its_key_stored_encrypted_never_returned_nor_logged(
    personas: Personas, client: Client, openai_upstream: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = variant_body(openai_upstream, "heron-2")
    response = client.post(VARIANTS, body, content_type="application/json", headers=personas.owner.headers())

    assert response.status_code == 201
    out = response.json()
    assert "api_key" not in out and out["has_api_key"] is True
    assert body["api_key"] not in response.content.decode()
    variant = LLM.objects.get(pk=out["id"])
    assert variant.visibility == LLM.Visibility.PRIVATE and variant.owner == personas.owner.organization
    assert (variant.codename, variant.model, variant.temperature, variant.max_tokens) == (
        "heron-2",
        "up-heron-2",
        0.5,
        512,
    )
    assert body["api_key"] not in variant.api_key_encrypted
    assert crypto.decrypt(variant.api_key_encrypted) == body["api_key"] == variant.api_key()
    # The probe: one short call, with the key, through the OpenAI-compatible adapter.
    probe = openai_upstream.requests[-1]
    assert probe["path"] == "/v1/chat/completions"
    assert probe["headers"]["authorization"] == f"Bearer {body['api_key']}"
    assert probe["json"]["max_tokens"] <= 8 and probe["json"]["model"] == "up-heron-2"
    assert body["api_key"] not in caplog.text


@pytest.mark.parametrize(
    ("behaviour", "words"),
    [
        (Behaviour(status=401), "HTTP 401"),
        (Behaviour(status=503), "HTTP 503"),
        (Behaviour(garbage_after=0), "wire format"),
        (Behaviour(end_after=1), "wire format"),
    ],
)
def test_an_endpoint_that_fails_the_probe_is_refused_with_the_reason(
    personas: Personas, client: Client, openai_upstream: FakeOpenAI, behaviour: Behaviour, words: str
) -> None:
    openai_upstream.behaviours["up-broken"] = behaviour
    response = submit(client, personas.owner, openai_upstream, codename="broken", model="up-broken")
    body = assert_error(response, 400, words)
    assert body["code"] == "probe_failed"
    assert "sk-secret" not in response.content.decode()
    assert not LLM.objects.variants().exists()


def test_an_unreachable_endpoint_is_refused_as_such(
    personas: Personas, client: Client, openai_upstream: FakeOpenAI
) -> None:
    response = submit(client, personas.owner, openai_upstream, base_url=openai_upstream.refuse_port())
    assert_error(response, 400, "connection refused")
    response = submit(client, personas.owner, openai_upstream, base_url="http://no-such-host.invalid/v1")
    assert_error(response, 400, "could not be resolved")


def test_an_unknown_upstream_model_is_refused_with_the_endpoints_own_words(
    personas: Personas, client: Client, openai_upstream: FakeOpenAI
) -> None:
    response = submit(client, personas.owner, openai_upstream)
    assert response.status_code == 201
    body = variant_body(openai_upstream, "osprey")
    del openai_upstream.behaviours[body["model"]]
    response = client.post(VARIANTS, body, content_type="application/json", headers=personas.owner.headers())
    assert_error(response, 400, "HTTP 404")
    assert_error(response, 400, "does not exist")


def test_private_addresses_and_plain_http_are_refused_in_production(
    personas: Personas, client: Client, openai_upstream: FakeOpenAI, settings: Any
) -> None:
    settings.PROVIDER_ALLOW_PRIVATE_URLS = False
    assert_error(submit(client, personas.owner, openai_upstream), 400, "https://")
    for url in (
        "https://127.0.0.1/v1",
        "https://localhost:8443/v1",
        "https://169.254.169.254/v1",
        "https://[::1]/v1",
    ):
        body = assert_error(
            submit(client, personas.owner, openai_upstream, base_url=url), 400, "not a public address"
        )
        assert body["code"] == "private_base_url"
    assert not openai_upstream.requests  # refused before any call went out


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"codename": "has space"}, "codename"),
        ({"codename": ""}, "codename"),
        ({"codename": "x" * 41}, "codename"),
        ({"backend": "demo"}, "backend"),
        ({"backend": "carrier-pigeon"}, "backend"),
        ({"base_url": "ftp://example.org/v1"}, "base_url"),
        ({"base_url": "not a url"}, "base_url"),
        ({"api_key": "sk-with\nnewline"}, "api_key"),
        ({"api_key": "sk with space"}, "api_key"),
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": "warm"}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 10**12}, "max_tokens"),
        ({"model": ""}, "model"),
        ({"notes": "n\x00ul"}, "notes"),
        ({"weight": 50}, "weight"),
        ({"visibility": "public"}, "visibility"),
    ],
)
def test_a_malformed_submission_is_a_400_naming_the_field(
    personas: Personas, client: Client, openai_upstream: FakeOpenAI, overrides: dict[str, Any], field: str
) -> None:
    body = assert_error(submit(client, personas.owner, openai_upstream, **overrides), 400, field)
    assert field in body["errors"]
    assert not openai_upstream.requests and not LLM.objects.variants().exists()


def test_a_submission_with_credentials_in_the_url_is_refused(
    personas: Personas, client: Client, openai_upstream: FakeOpenAI
) -> None:
    url = openai_upstream.base_url.replace("http://", "http://user:pass@")
    assert_error(submit(client, personas.owner, openai_upstream, base_url=url), 400, "credentials")


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b"[1, 2]", "application/json", 400),
        (b'"text"', "application/json", 400),
        (b'{"temperature": NaN}', "application/json", 400),
        (b"codename=x", "application/x-www-form-urlencoded", 415),
    ],
)
def test_a_body_that_is_not_a_json_object_is_a_4xx_with_a_reason(
    personas: Personas, client: Client, content: bytes, content_type: str, status: int
) -> None:
    response = client.post(VARIANTS, content, content_type=content_type, headers=personas.owner.headers())
    assert response.status_code == status
    assert response.json()["detail"]


def test_odd_variant_ids_are_404s_in_json(personas: Personas, variant_of_a: LLM, client: Client) -> None:
    for odd in ("abc", "-1", "0", str(2**64), "1.5", "%C2%B2"):
        assert_error(get(client, personas.owner, f"{VARIANTS}{odd}/"), 404, "no such variant")


# --- publishing and retiring -------------------------------------------------------------------------


def test_publishing_makes_it_public_under_its_codename_by_default(
    personas: Personas, variant_of_a: LLM, client: Client
) -> None:
    response = post(client, personas.owner, f"{VARIANTS}{variant_of_a.pk}/publish/")
    assert response.status_code == 200
    assert response.json()["name"] == "falcon-7" and response.json()["status"] == "published"
    variant_of_a.refresh_from_db()
    assert variant_of_a.visibility == LLM.Visibility.PUBLIC and variant_of_a.published_at is not None
    assert [m["name"] for m in client.get("/api/v1/models/").json()] == ["falcon-7"]
    assert_error(
        post(client, personas.owner, f"{VARIANTS}{variant_of_a.pk}/publish/"), 409, "already published"
    )


def test_publishing_under_a_taken_name_is_a_409_with_the_reason(
    personas: Personas, variant_of_a: LLM, client: Client, make_llm: Any
) -> None:
    make_llm(name="gpt-4o")
    body = assert_error(
        post(client, personas.owner, f"{VARIANTS}{variant_of_a.pk}/publish/", {"name": "gpt-4o"}),
        409,
        "already used",
    )
    assert body["code"] == "name_taken"
    for bad in ("", " padded ", "private/x"):
        assert_error(
            post(client, personas.owner, f"{VARIANTS}{variant_of_a.pk}/publish/", {"name": bad}), 400, "name"
        )
    assert_error(
        post(client, personas.owner, f"{VARIANTS}{variant_of_a.pk}/publish/", {"nom": "x"}),
        400,
        "unknown field",
    )
    variant_of_a.refresh_from_db()
    assert variant_of_a.published_at is None


def test_retiring_stops_sampling_and_keeps_the_record(
    personas: Personas, variant_of_a: LLM, client: Client
) -> None:
    assert variant_of_a in LLM.objects.drawable()
    response = post(client, personas.owner, f"{VARIANTS}{variant_of_a.pk}/retire/")
    assert response.status_code == 200 and response.json()["status"] == "retired"
    variant_of_a.refresh_from_db()
    assert variant_of_a not in LLM.objects.drawable() and variant_of_a.retired_at is not None
    assert get(client, personas.owner, f"{VARIANTS}{variant_of_a.pk}/").json()["status"] == "retired"
    assert_error(post(client, personas.owner, f"{VARIANTS}{variant_of_a.pk}/retire/"), 409, "already retired")
    assert_error(post(client, personas.owner, f"{VARIANTS}{variant_of_a.pk}/publish/"), 409, "retired")


# --- keys ---------------------------------------------------------------------------------------------


def key_for(persona: Persona) -> OrganizationAPIKey:
    assert persona.key is not None
    return OrganizationAPIKey.objects.get_from_key(persona.key)


def test_a_revoked_key_is_refused(personas: Personas, client: Client) -> None:
    assert get(client, personas.owner, VARIANTS).status_code == 200
    assert api_key_revoke(api_key=key_for(personas.owner), actor="test") is True
    assert_error(get(client, personas.owner, VARIANTS), 401, "unknown or revoked")
    assert api_key_revoke(api_key=key_for_revoked(personas.owner), actor="test") is False
    actions = list(
        APIKeyEvent.objects.filter(organization=personas.owner.organization).values_list("action", flat=True)
    )
    assert sorted(actions) == ["created", "created", "revoked"]


def key_for_revoked(persona: Persona) -> OrganizationAPIKey:
    assert persona.key is not None
    return OrganizationAPIKey.objects.get(prefix=persona.key.partition(".")[0])


def test_a_key_stops_working_when_its_member_leaves(personas: Personas, client: Client) -> None:
    Membership.objects.filter(user__username="bob").delete()
    assert_error(get(client, personas.teammate, VARIANTS), 401, "no longer belongs")
    assert get(client, personas.owner, VARIANTS).status_code == 200


@pytest.mark.parametrize(
    "header",
    [
        "Api-Key ",
        "Api-Key nonsense",
        "Api-Key abc.def",
        "Api-Key \x00\x01",
        "Api-Key " + "x" * 500,
        "Bearer abc",
    ],
)
def test_a_malformed_or_unknown_key_is_a_401(personas: Personas, client: Client, header: str) -> None:
    response = client.get(VARIANTS, HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response.json()["detail"]


def test_using_a_key_records_when_it_was_last_used(personas: Personas, client: Client) -> None:
    assert key_for(personas.owner).last_used is None
    get(client, personas.owner, VARIANTS)
    assert key_for(personas.owner).last_used is not None


def test_the_command_prints_a_new_key_that_works_and_logs_only_its_prefix(
    personas: Personas, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    out, err = StringIO(), StringIO()
    call_command("create_api_key", "acme", "--name", "ci", stdout=out, stderr=err)
    secret = out.getvalue().strip()
    assert get(client, Persona("ci", secret, None), VARIANTS).status_code == 200
    key = key_for(Persona("ci", secret, None))
    assert key.organization.slug == "acme" and key.user is None
    assert secret not in caplog.text and key.prefix in caplog.text
    assert secret not in str(list(OrganizationAPIKey.objects.values())) + err.getvalue()
    event = APIKeyEvent.objects.get(key=key)
    assert (event.action, event.actor) == ("created", "command")


def test_the_command_can_create_the_organisation_and_refuses_unknown_ones(db: None) -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--create"):
        call_command("create_api_key", "nobody", stdout=StringIO(), stderr=StringIO())
    out = StringIO()
    call_command("create_api_key", "New Lab", "--create", stdout=out, stderr=StringIO())
    assert OrganizationAPIKey.objects.get_from_key(out.getvalue().strip()).organization.slug == "new-lab"


def test_the_admin_creates_a_key_shown_once_and_revokes_it_with_an_audit_trail(
    personas: Personas, admin_client: Client
) -> None:
    org = personas.owner.organization
    assert org is not None
    response = admin_client.post(
        "/admin/providers/organizationapikey/add/",
        {"name": "from admin", "organization": org.pk, "user": "", "expiry_date_0": "", "expiry_date_1": ""},
        follow=True,
    )
    assert response.status_code == 200
    messages = [str(m) for m in response.context["messages"]]
    secret = next(m for m in messages if "API key" in m).split("is: ")[1].split(" ")[0]
    key = OrganizationAPIKey.objects.get_from_key(secret)
    assert APIKeyEvent.objects.get(key=key).actor == "admin:admin"

    response = admin_client.post(
        "/admin/providers/organizationapikey/",
        {"action": "revoke", "_selected_action": [key.pk]},
        follow=True,
    )
    assert response.status_code == 200
    key.refresh_from_db()
    assert key.revoked
    assert list(APIKeyEvent.objects.filter(key=key).values_list("action", flat=True)) == [
        "revoked",
        "created",
    ]
    assert admin_client.get(f"/admin/providers/organizationapikey/{key.pk}/delete/").status_code == 403


def test_the_admin_refuses_a_key_for_someone_outside_the_organisation(
    personas: Personas, admin_client: Client
) -> None:
    org = personas.owner.organization
    assert org is not None
    carol = Membership.objects.get(user__username="carol").user
    response = admin_client.post(
        "/admin/providers/organizationapikey/add/",
        {"name": "x", "organization": org.pk, "user": carol.pk, "expiry_date_0": "", "expiry_date_1": ""},
    )
    assert response.status_code == 200 and "is not a member of" in response.content.decode()
    assert not OrganizationAPIKey.objects.filter(user=carol, organization=org).exists()


# --- limits -------------------------------------------------------------------------------------------


def test_each_key_is_throttled_on_its_own_with_a_retry_after(
    personas: Personas, client: Client, settings: Any
) -> None:
    settings.PROVIDER_API_RATE = "3/minute"
    for _ in range(3):
        assert get(client, personas.owner, VARIANTS).status_code == 200
    response = get(client, personas.owner, VARIANTS)
    assert_error(response, 429, "throttled")
    assert int(response["Retry-After"]) > 0
    # Another key, even of the same organisation, has its own allowance.
    assert get(client, personas.teammate, VARIANTS).status_code == 200


def test_submissions_have_a_tighter_allowance_per_key(
    personas: Personas, client: Client, openai_upstream: FakeOpenAI, settings: Any
) -> None:
    settings.PROVIDER_SUBMIT_RATE = "1/hour"
    assert submit(client, personas.owner, openai_upstream, codename="one").status_code == 201
    assert_error(submit(client, personas.owner, openai_upstream, codename="two"), 429, "throttled")
    assert get(client, personas.owner, VARIANTS).status_code == 200

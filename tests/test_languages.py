"""The interface in the visitor's language: chosen from the browser's Accept-Language or the
header's switcher (Django's set_language, a CSRF-checked form); pages, the JS catalogue and the
API's error messages follow it; field names, codes and the vote export stay as programs read them."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from arena.models import Battle, Vote
from arena.services import after_vote
from leaderboard import services
from providers.models import LLM

pytestmark = pytest.mark.django_db

FRENCH = "Quelle réponse est la meilleure"
CHINESE = "哪个回答更好？"


def page(client: Client, path: str = "/", **headers: str) -> str:
    response = client.get(path, headers=headers)
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.parametrize(
    ("accept", "lang", "heading"),
    [
        ("fr-FR,fr;q=0.9,en;q=0.8", "fr", FRENCH),
        ("zh-CN,zh;q=0.9", "zh-hans", CHINESE),
        ("zh-Hans", "zh-hans", CHINESE),
        ("en-GB,en;q=0.9", "en", "Which answer is better?"),
        ("de-DE,de;q=0.9", "en", "Which answer is better?"),  # not shipped: English
        ("", "en", "Which answer is better?"),
    ],
)
def test_the_page_speaks_the_browsers_language(client: Client, accept: str, lang: str, heading: str) -> None:
    response = client.get("/", headers={"accept-language": accept} if accept else {})
    html = response.content.decode()
    assert f'<html lang="{lang}">' in html
    assert heading in html
    assert response["Content-Language"] == lang
    assert "Accept-Language" in response["Vary"]  # a cache keeps one copy per language


def test_the_switcher_is_a_csrf_checked_form_of_buttons_in_the_header(client: Client) -> None:
    html = page(client, "/leaderboard/")
    form = html[html.index('<form class="lang-switch"') : html.index("</form>", html.index("lang-switch"))]
    assert 'action="/i18n/setlang/" method="post"' in form
    assert 'name="csrfmiddlewaretoken"' in form and 'name="next" value="/leaderboard/"' in form
    for code, name in (("en", "English"), ("fr", "Français"), ("zh-hans", "简体中文")):
        assert f'value="{code}" lang="{code}"' in form and f">{name}</button>" in form
    assert 'value="en" lang="en" aria-current="true"' in form
    assert "<script>" not in html  # no inline script: the strict CSP stays


def test_choosing_a_language_sets_the_cookie_and_returns_to_the_page() -> None:
    client = Client(enforce_csrf_checks=True)
    page(client, "/leaderboard/")  # sets the CSRF cookie, as a browser's first visit does
    token = client.cookies["csrftoken"].value
    response = client.post(
        "/i18n/setlang/", {"language": "fr", "next": "/leaderboard/", "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302 and response["Location"] == "/leaderboard/"
    assert client.cookies["django_language"].value == "fr"
    # The choice beats the browser's own preference.
    html = page(client, "/leaderboard/", **{"accept-language": "zh-CN"})
    assert "<h1>Classement</h1>" in html and 'value="fr" lang="fr" aria-current="true"' in html
    assert ">Contrôle du style</a>" in html and ">Général (brut)</a>" in html  # the boards' tabs

    response = client.post("/i18n/setlang/", {"language": "zh-hans", "csrfmiddlewaretoken": token})
    assert "<h1>排行榜</h1>" in page(client, "/leaderboard/")


def test_the_switcher_refuses_a_forged_post_an_unknown_language_and_an_outside_next() -> None:
    client = Client(enforce_csrf_checks=True)
    assert client.post("/i18n/setlang/", {"language": "fr"}).status_code == 403  # no CSRF token
    assert "django_language" not in client.cookies
    page(client)
    token = client.cookies["csrftoken"].value
    client.post("/i18n/setlang/", {"language": "xx", "csrfmiddlewaretoken": token})
    assert "django_language" not in client.cookies  # not a shipped language: nothing set
    response = client.post(
        "/i18n/setlang/", {"language": "fr", "next": "https://evil.example/", "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302 and response["Location"] == "/"  # never off the site


def test_the_js_catalogue_is_a_cacheable_script_file_loaded_before_the_pages_scripts(client: Client) -> None:
    html = page(client, "/", **{"accept-language": "fr"})
    catalogue = html.index('<script src="/jsi18n/?lang=fr" defer></script>')
    assert catalogue < html.index("arena/battle.js") and catalogue < html.index("arena/render.js")
    response = client.get("/jsi18n/?lang=fr", headers={"accept-language": "fr"})
    assert response.status_code == 200 and "javascript" in response["Content-Type"]
    assert "public" in response["Cache-Control"] and "max-age=3600" in response["Cache-Control"]
    body = response.content.decode()  # the catalogue as JSON, ASCII-escaped
    assert json.dumps("Les deux réponses sont là. Laquelle est la meilleure\u00a0?") in body
    assert json.dumps("Relancer la réponse du modèle %(side)s") in body
    chinese = client.get("/jsi18n/?lang=zh-hans", headers={"accept-language": "zh-CN"}).content.decode()
    assert json.dumps("复制代码") in chinese  # "Copy the code"


def test_api_errors_come_in_the_callers_language_with_the_codes_unchanged(
    client: Client, make_llm: Callable[..., LLM], settings: Any
) -> None:
    english = client.get("/api/v1/visitor/data").json()
    french = client.get("/api/v1/visitor/data", headers={"accept-language": "fr"}).json()
    assert english == {
        "detail": "This browser holds no visitor cookie, so nothing is stored for it.",
        "code": "no_visitor",
    }
    assert french == {
        "detail": "Ce navigateur n’a pas de cookie de visiteur\u00a0: rien n’est enregistré à son nom.",
        "code": "no_visitor",
    }
    chinese = client.get("/api/v1/nowhere/", headers={"accept-language": "zh-CN"}).json()
    assert chinese == {"detail": "该资源不存在。", "code": "not_found"}
    # A message with values, filled into the French sentence; nothing is stored.
    settings.ARENA_PROMPT_MAX_CHARS = 10
    make_llm(), make_llm()
    response = client.post(
        "/api/v1/battles/",
        data=json.dumps({"prompt": "x" * 11}),
        content_type="application/json",
        headers={"accept-language": "fr"},
    )
    assert response.status_code == 400
    assert response.json() == {
        "detail": "La question fait 11 caractères\u00a0; la limite est de 10.",
        "code": "prompt_too_long",
    }
    assert not Battle.objects.exists()


def test_field_names_enums_and_the_vote_export_do_not_change_with_the_language(
    make_llm: Callable[..., LLM], settings: Any
) -> None:
    settings.LEADERBOARD_BOOTSTRAP = 20
    settings.LEADERBOARD_STYLE_BOOTSTRAP = 10
    a, b = make_llm(), make_llm()
    for winner in ("a", "b", "tie", "bothbad"):
        battle = Battle.objects.create(model_a=a, model_b=b, state=Battle.State.VOTED, visitor_hash="v")
        after_vote(vote=Vote.objects.create(battle=battle, winner=winner))
    services.recompute_all()
    snapshot = services.latest_snapshot()
    assert snapshot is not None
    paths = (
        f"/api/v1/leaderboard/snapshots/{snapshot.pk}/votes",
        f"/api/v1/leaderboard/snapshots/{snapshot.pk}/csv",
        "/api/v1/leaderboard/",
    )
    for path in paths:
        bodies = {
            lang: b"".join(Client().get(path, headers={"accept-language": lang}))
            for lang in ("en", "fr", "zh-CN")
        }
        assert bodies["en"] == bodies["fr"] == bodies["zh-CN"], path
    votes = b"".join(Client().get(paths[0], headers={"accept-language": "fr"})).decode().splitlines()
    assert sorted(json.loads(line)["winner"] for line in votes) == [
        "model_a",
        "model_b",
        "tie",
        "tie (bothbad)",
    ]


def test_the_cached_board_page_gives_each_visitor_their_own_token_address_and_language() -> None:
    first, second = Client(enforce_csrf_checks=True), Client(enforce_csrf_checks=True)
    page(first, "/leaderboard/?board=overall")  # fills the page cache
    html = page(second, "/leaderboard/")
    token = second.cookies["csrftoken"].value
    assert 'name="next" value="/leaderboard/"' in html and "arena-page" not in html
    response = second.post(
        "/i18n/setlang/", {"language": "fr", "next": "/leaderboard/", "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302  # the token in the cached page is this visitor's own
    assert "<h1>Classement</h1>" in page(second, "/leaderboard/")
    assert "<h1>Leaderboard</h1>" in page(first, "/leaderboard/")  # one cached copy per language


def test_the_provider_api_answers_in_the_callers_language_too(client: Client) -> None:
    no_key = client.get("/api/v1/provider/variants/", headers={"accept-language": "fr"})
    assert no_key.status_code == 401 and no_key.json()["detail"].startswith(
        "Ce point d’accès nécessite une clé d’API d’organisation"
    )
    bad_key = client.get(
        "/api/v1/provider/variants/", headers={"accept-language": "zh-CN", "authorization": "Api-Key nope"}
    )
    assert bad_key.status_code == 401 and bad_key.json()["detail"] in (
        "API 密钥未知或已被吊销。",
        "API 密钥格式错误：请发送 `Authorization: Api-Key <key>`。",
    )

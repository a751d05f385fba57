"""Errors to Sentry (settings.SENTRY_DSN), with nothing of a visitor's or a provider's in them.

sentry-sdk is imported only when a DSN is set. Whatever an event holds, `scrub` removes before it
leaves: request bodies, cookies, query strings, the Authorization / X-Api-Key / Cookie / forwarded
address headers, the user and their address, frame variables, log parameters, any field named like
a prompt, an answer or a secret, quoted text in error messages (an upstream's error may quote the
prompt), and, in every remaining string, anything shaped like an IP address or a key.
"""

from __future__ import annotations

import re
from typing import Any

FILTERED = "[Filtered]"
# Headers that name the visitor, the network or a credential.
DROPPED_HEADERS = {
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "cookie",
    "set-cookie",
    "x-forwarded-for",
    "x-real-ip",
    "forwarded",
    "x-csrftoken",
}
# A field whose name has one of these words (split at "_", "-", "." and spaces) holds what a
# visitor typed, what a model answered, or a secret.
SENSITIVE_WORDS = {
    "prompt", "prompts", "answer", "answers", "text", "content", "contents", "body", "data",
    "messages", "key", "keys", "token", "tokens", "secret", "password", "passwd", "auth",
    "authorization", "cookie", "cookies", "session", "sessionid", "csrf", "csrftoken", "signature",
    "dsn", "ip", "addr", "address", "visitor", "network", "email", "user", "username",
}  # fmt: skip
# Headers whose names share such a word and say nothing of anyone.
PLAIN_KEYS = {"user-agent", "content-type", "content-length", "content-encoding", "content-language"}
WORD_SPLIT = re.compile(r"[_\-. ]+")
IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
IPV6 = re.compile(r"(?<![\w:])(?:[0-9a-fA-F]{1,4}:){2,7}[0-9a-fA-F]{0,4}(?![\w:])")
# A key: a known prefix, a Bearer/Api-Key credential, or a long run of token characters.
KEY_LIKE = re.compile(
    r"(?:Bearer|Api-Key|Token)\s+\S+|\b(?:sk|pk|rk|hf|gsk|xai)[-_][A-Za-z0-9_-]{8,}|"
    r"\b[A-Za-z0-9_-]{32,}\b|\b[A-Za-z0-9+/]{40,}={0,2}"
)


def init_sentry(dsn: str, *, environment: str) -> None:
    import sentry_sdk

    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        send_default_pii=False,  # no user, no cookies, no client address from the integrations
        include_local_variables=False,  # a frame's variables may be a prompt or a key
        max_request_body_size="never",
        traces_sample_rate=0.0,  # errors only
        before_send=scrub,
        before_breadcrumb=scrub_breadcrumb,
    )


def scrub(event: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """The event with everything a visitor or a provider typed or is known by taken out."""
    event.pop("user", None)
    event.pop("server_name", None)  # a pod's name is harmless, but it is no error's cause either
    request = event.get("request")
    if isinstance(request, dict):
        for field in ("data", "cookies", "query_string", "env"):
            request.pop(field, None)
        headers = request.get("headers")
        if isinstance(headers, dict):
            request["headers"] = {k: v for k, v in headers.items() if k.lower() not in DROPPED_HEADERS}
    logentry = event.get("logentry")
    if isinstance(logentry, dict):
        logentry.pop("params", None)  # the message's arguments: a prompt if a line logged one
        if logentry.get("message") and logentry.get("formatted"):
            logentry["formatted"] = logentry["message"]  # the template, without the arguments
    for exception in (event.get("exception") or {}).get("values") or []:
        if isinstance(exception.get("value"), str):
            exception["value"] = scrub_quotes(exception["value"])
        for frame in (exception.get("stacktrace") or {}).get("frames") or []:
            frame.pop("vars", None)
    for thread in (event.get("threads") or {}).get("values") or []:
        for frame in (thread.get("stacktrace") or {}).get("frames") or []:
            frame.pop("vars", None)
    return _clean(event)


def scrub_breadcrumb(crumb: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any]:
    record = (hint or {}).get("log_record")
    if record is not None and record.args:
        crumb["message"] = str(record.msg)  # a log line's template, without its arguments
    return _clean(crumb)


def _clean(value: Any, key: str = "") -> Any:
    name = key.lower()
    if name and name not in PLAIN_KEYS and any(word in SENSITIVE_WORDS for word in WORD_SPLIT.split(name)):
        return FILTERED
    if isinstance(value, dict):
        return {k: _clean(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, str):
        return scrub_text(value)
    return value


# Quoted text in an error message: an upstream's error may quote the prompt back.
QUOTED = re.compile(r"'[^']{16,}'|\"[^\"]{16,}\"|“[^”]{16,}”")
MAX_ERROR_CHARS = 300


def scrub_quotes(text: str) -> str:
    return QUOTED.sub(FILTERED, text)[:MAX_ERROR_CHARS]


def scrub_text(text: str) -> str:
    """A string with addresses and key-shaped runs replaced."""
    text = KEY_LIKE.sub(FILTERED, text)
    text = IPV4.sub(FILTERED, text)
    return IPV6.sub(FILTERED, text)

"""Which adapter speaks for each `LLM.Backend`. Adding a vendor: one adapter file, one line here."""

from __future__ import annotations

from providers.anthropic import Anthropic
from providers.base import Backend, UpstreamError
from providers.demo import Demo
from providers.gemini import Gemini
from providers.openai import OpenAICompatible

BACKENDS: dict[str, Backend] = {
    backend.name: backend
    for backend in (
        OpenAICompatible(),
        Anthropic(),
        Gemini(),
        Demo(),
    )
}
# The vendors a model can be called through over HTTP (and a provider can submit a variant on).
REMOTE_BACKENDS: tuple[str, ...] = tuple(name for name, backend in BACKENDS.items() if backend.remote)


def backend_for(name: str) -> Backend:
    try:
        return BACKENDS[name]
    except KeyError:
        # A registry row naming a backend this code does not have: a configuration error, told
        # to the voter in words that name nothing.
        raise UpstreamError(
            "The model's service is not configured correctly.", detail=f"no adapter for backend {name!r}"
        ) from None

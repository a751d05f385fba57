"""The one seam between the arena and every model backend.

An adapter turns a chat request into one normalised stream of `Chunk`s. All vendor HTTP goes
through the `httpx.AsyncClient` handed in by `providers.http.client()`, so tests replace exactly
one thing: the upstream at the other end of the socket.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import ClassVar, Literal, NotRequired, TypedDict

import httpx

# The httpx request extension that carries `CallSpec.public_only` to the transport (providers.http).
PUBLIC_ONLY = "arena.public_only"


@dataclass(frozen=True)
class Image:
    """An image a user message carries, checked already (arena.images); each adapter writes it in
    its vendor's format, and only to a model marked `vision`."""

    mime_type: str
    data: bytes = field(repr=False)

    def base64(self) -> str:
        return base64.b64encode(self.data).decode("ascii")

    def data_url(self) -> str:
        return f"data:{self.mime_type};base64,{self.base64()}"


class Message(TypedDict):
    role: Literal["system", "user", "assistant"]
    content: str
    image: NotRequired[Image]


@dataclass(frozen=True)
class CallSpec:
    """Everything an adapter needs for one call; a plain value, no database row."""

    backend: str
    base_url: str
    model: str
    api_key: str = field(repr=False)  # never in reprs, logs or error texts
    temperature: float
    max_tokens: int
    connect_timeout: float = 10.0
    first_token_timeout: float = 60.0
    total_timeout: float = 300.0
    # Backend-specific knobs (the demo backend's pace, for instance).
    options: dict[str, float | str] = field(default_factory=dict)
    # Connect to public addresses only, at every connection: a provider's variant, whose host
    # (and its DNS) the provider controls (providers.http.public_socket).
    public_only: bool = False

    def sampling_params(self) -> dict[str, float | int]:
        """The parameters sent on every call, recorded with it."""
        return {"temperature": self.temperature, "max_tokens": self.max_tokens}


@dataclass(frozen=True)
class Chunk:
    """One normalised stream event.

    kind "delta": `text` is new answer text. kind "finish": the answer ended; `finish_reason`,
    and token counts when the upstream reported usage. An adapter yields deltas then exactly one
    finish, or raises `UpstreamError`.

    A delta may join several of the upstream's deltas that arrived together (in one read from the
    network); `deltas` says how many, so that the call record's inter-token gap stays a gap
    between the upstream's deltas however they were read.
    """

    kind: Literal["delta", "finish"]
    text: str = ""
    deltas: int = 1
    finish_reason: str = ""
    input_tokens: int | None = None
    output_tokens: int | None = None


class UpstreamError(Exception):
    """The upstream failed. `public` is safe to show a voter; `detail` is for operators only.

    `public` must never name the model or vendor (anonymity); `detail` may carry the upstream body.
    `transient` says whether a retry could help (connect errors, 429, 5xx); `permanent` errors
    (401, 403, 404) mean the model's configuration is wrong and it should leave the draw.
    """

    def __init__(
        self,
        public: str,
        *,
        detail: str = "",
        status: int | None = None,
        transient: bool = False,
        retry_after: float | None = None,
        permanent: bool | None = None,
    ) -> None:
        super().__init__(detail or public)
        self.public = public
        self.detail = detail or public
        self.status = status
        self.transient = transient
        # Seconds the upstream asked us to wait (a 429's Retry-After), when it said.
        self.retry_after = retry_after
        # Said outright when the status does not tell (Gemini rejects a bad key with a 400).
        self._permanent = permanent

    @property
    def permanent(self) -> bool:
        if self._permanent is not None:
            return self._permanent
        return self.status in (401, 403, 404)


class Backend:
    """Base of every adapter: one subclass per wire protocol, registered in `providers.registry`."""

    name: ClassVar[str]
    # Calls out over HTTP, so a model on it needs a base_url and an upstream model id.
    remote: ClassVar[bool] = True

    def stream(
        self, spec: CallSpec, messages: list[Message], client: httpx.AsyncClient
    ) -> AsyncIterator[Chunk]:
        raise NotImplementedError

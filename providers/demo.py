"""Demo models: answers made up on this machine, so the arena runs with no key and no network.

Each demo model id is a "personality" with its own way of answering, so two demo answers differ
visibly and a voter has something to prefer. An answer is a pure function of the model id and the
conversation: the same battle replays the same words.

The text never says "demo", a personality id or a vendor's name: the arena's identity-leak check
would exclude the vote (the registry rows are named after the personalities).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
from collections.abc import AsyncIterator, Callable

import httpx
from django.core.cache import cache

from providers import images
from providers.base import Backend, CallSpec, Chunk, Image, Message, UpstreamError

ERROR_MARKER = "[demo:error]"
# Answers with the rest of the prompt, as written: a person can see how any Markdown renders.
ECHO_MARKER = "[demo:echo]"
WORDS_BEFORE_ERROR = 5
ERROR_COUNT_SECONDS = 3600

STOPWORDS = frozenset(
    """a about above after again all also am an and any are as at be because been before being
    below between both but by can could did do does doing down during each even ever every few for
    from further get give got had has have having he her here hers him his how i if in into is it
    its itself just let like me more most much my no nor not now of off on once only or other our
    out over own please same she should so some such tell than that the their them then there these
    they this those through to too under until up very was way we were what when where which while
    who whom why will with would you your yours explain describe make made good best better need
    want know use using used write show find work one two many well think really thing things
    something new way ways help cup bit lot""".split()
)

# Words that must not come out of a demo model, even when the voter typed them: the personality
# ids name the registry rows, so echoing one would look like a model naming itself.
PERSONALITIES = ("concise", "structured", "thoughtful", "restating")
UNSAYABLE = re.compile(r"\S*\b(?:demo|" + "|".join(PERSONALITIES) + r")\b\S*", re.IGNORECASE)


class Prompt:
    """The parts of the conversation an answer reuses."""

    def __init__(self, messages: list[Message]) -> None:
        users = [m["content"] for m in messages if m["role"] == "user"]
        last = users[-1] if users else ""
        self.follow_up = len(users) > 1
        self.question = _quote(last)
        self.words = _keywords(last) or ["the question", "the context", "the goal"]
        while len(self.words) < 3:
            self.words.append(("the context", "the use case")[len(self.words) - 1])
        self.earlier = (_keywords(users[-2]) or ["that"])[0] if self.follow_up else ""

    @property
    def topic(self) -> str:
        a, b, c = self.words[:3]
        return f"{a}, {b} and {c}"


def _clean(text: str) -> str:
    return " ".join(UNSAYABLE.sub("", text).split())


def _quote(text: str, limit: int = 90) -> str:
    text = _clean(text)
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + "…"


def _keywords(text: str) -> list[str]:
    found: list[str] = []
    for word in re.findall(r"[^\W_][\w'+#.-]*[\w+#]|[^\W_]", _clean(text)):
        if word.lower() in STOPWORDS or len(word) < 3 or word.lower() in (w.lower() for w in found):
            continue
        found.append(word)
    # Longer words carry the topic ("coffee", "press") more often than short ones; keep the five
    # longest, in the order the voter wrote them.
    longest = set(sorted(found, key=len, reverse=True)[:5])
    return [w for w in found if w in longest][:5]


# --- the personalities ----------------------------------------------------------------------------
# Each takes the prompt and a random generator seeded from the conversation, and returns markdown.


def _concise(p: Prompt, rng: random.Random) -> str:
    a, b, c = p.words[:3]
    opening = rng.choice(
        [
            f"In short: it mostly comes down to {a}.",
            f"Short answer: {a}, with {b} as the deciding factor.",
            f"Briefly, the key is how {a} relates to {b}.",
        ]
    )
    advice = rng.choice(
        [
            f"Get {a} right first, then adjust {b}; {c} rarely changes the outcome.",
            f"Focus on {b}, keep {c} simple, and the rest follows.",
            f"Check {c} last: most of the effect comes from {a} and {b}.",
        ]
    )
    lead = f"Building on {p.earlier}: " if p.follow_up else ""
    return f"{lead}{opening} {advice}"


def _structured(p: Prompt, rng: random.Random) -> str:
    a, b, c = p.words[:3]
    heading = rng.choice(["Overview", "Quick guide", "At a glance"])
    points = [
        f"- **What {a} is:** the starting point, and the part most people get wrong.",
        f"- **Why {b} matters:** it shapes how {a} behaves in practice.",
        f"- **Where {c} fits:** a secondary factor, worth checking once the basics hold.",
    ]
    rng.shuffle(points)
    steps = [
        f"1. Pin down what you need from {a}.",
        f"2. Compare the options for {b}.",
        f"3. Test the result against {c}.",
    ]
    lead = f"Continuing from {p.earlier}.\n\n" if p.follow_up else ""
    return (
        f"{lead}## {heading}: {a}\n\n"
        f"Here is a breakdown of **{p.topic}**.\n\n" + "\n".join(points) + "\n\n"
        "### Steps\n\n" + "\n".join(steps) + "\n\n"
        f"**Bottom line:** start with {a}, and let {b} guide the details."
    )


def _thoughtful(p: Prompt, rng: random.Random) -> str:
    a, b, c = p.words[:3]
    opening = rng.choice(
        [
            "That's a good question, and it is worth taking a moment over.",
            "Let me think this through step by step.",
            "There is more to this than it first seems.",
        ]
    )
    example = rng.choice(
        [
            f"For example, imagine {a} doubled while {b} stayed the same: you would expect {c} to "
            "shift too, and how much it shifts tells you which factor dominates.",
            f"For example, picture two cases that differ only in {b}. If the one with more {b} "
            f"handles {a} better, you have your answer; if not, look at {c}.",
        ]
    )
    return (
        f"{opening}\n\n"
        f'At its heart, "{p.question}" is about {a}. The first thing to notice is that {a} '
        f"does not act alone: {b} and {c} both pull on it, sometimes in opposite directions.\n\n"
        f"{example}\n\n"
        f"There are trade-offs, though. Optimising {a} in isolation can make {b} worse, so the "
        f"balance depends on what matters most to you.\n\n"
        f"So my overall view: understand {a} first, then weigh {b} against {c} for your case."
    )


def _restating(p: Prompt, rng: random.Random) -> str:
    a, b, c = p.words[:3]
    closing = rng.choice(
        [
            f"Does that answer what you wanted to know about {a}?",
            f"Let me know if you meant something else by {a}.",
            f"Happy to go deeper on {b} if that helps.",
        ]
    )
    return (
        f'If I understand correctly, you are asking: "{p.question}"\n\n'
        f"In other words, you want to know how {a} and {b} fit together, and what that means "
        f"for {c}.\n\n"
        f"Here is my answer: {a} sets the frame, {b} decides the details, and {c} follows from "
        f"the two. Seen that way, the question mostly reduces to {a}.\n\n"
        f"{closing}"
    )


STYLES: dict[str, Callable[[Prompt, random.Random], str]] = {
    "concise": _concise,
    "structured": _structured,
    "thoughtful": _thoughtful,
    "restating": _restating,
}
DEFAULT_STYLE = "concise"


def _echo(prompt: str) -> str:
    # Words that would name a demo model go, as everywhere else; the rest keeps its layout.
    text = UNSAYABLE.sub("", prompt.replace(ECHO_MARKER, "")).strip()
    return text or "There is nothing to repeat."


def answer(model: str, messages: list[Message]) -> str:
    """The answer of demo model `model` to `messages`: the same inputs always give the same text."""
    users = [m["content"] for m in messages if m["role"] == "user"]
    if users and ECHO_MARKER in users[-1]:
        return _echo(users[-1])
    plain = [{**m, "image": m["image"].base64()} if "image" in m else m for m in messages]
    seed = hashlib.sha256(json.dumps([model, plain], sort_keys=True).encode()).digest()
    rng = random.Random(int.from_bytes(seed[:8], "big"))
    seen = [_seen(m["image"]) for m in messages if "image" in m]
    return "".join(seen) + STYLES.get(model, STYLES[DEFAULT_STYLE])(Prompt(messages), rng)


def _seen(image: Image) -> str:
    """What a demo model can tell of an image without looking: its type, size and pixels."""
    kind = image.mime_type.removeprefix("image/").upper()
    try:
        checked = images.check(image.data)
    except images.ImageError:
        return f"You sent a {kind} image of {len(image.data) // 1024} KB. "
    return (
        f"You sent a {kind} image of {checked.width}×{checked.height} pixels, {len(image.data) // 1024} KB. "
    )


def fails(messages: list[Message]) -> bool:
    """Whether this call fails: the marker is in the latest prompt, and the call is the first, third,
    fifth... to answer that prompt.

    A turn's two answers are called together, so exactly one of them fails; a retry of it fails once
    more, and the try after it ends well. The calls are counted in the cache, which every web
    process shares.
    """
    users = [m["content"] for m in messages if m["role"] == "user"]
    if not users or ERROR_MARKER not in users[-1]:
        return False
    turn = json.dumps([len(users), users[-1]])
    key = "demo:error:" + hashlib.sha256(turn.encode()).hexdigest()
    cache.add(key, 0, ERROR_COUNT_SECONDS)
    return cache.incr(key) % 2 == 1


class Demo(Backend):
    name = "demo"
    remote = False

    async def stream(
        self, spec: CallSpec, messages: list[Message], client: httpx.AsyncClient
    ) -> AsyncIterator[Chunk]:
        delay = float(spec.options.get("delay", 0.03))
        words = re.findall(r"\S+\s*", answer(spec.model, messages))
        # The marker lets a person see how a failed answer looks, and retry it, in the embedded run.
        fail = fails(messages)
        for n, word in enumerate(words[:WORDS_BEFORE_ERROR] if fail else words):
            if n and delay > 0:
                await asyncio.sleep(delay)
            yield Chunk("delta", text=word)
        if fail:
            raise UpstreamError(
                "The model's service answered with an error (HTTP 500).", status=500, transient=False
            )
        prompt_words = sum(len(m["content"].split()) for m in messages)
        yield Chunk("finish", finish_reason="stop", input_tokens=prompt_words, output_tokens=len(words))

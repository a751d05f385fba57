"""How busy each local vLLM server is, read from its Prometheus metrics, and which ones the sampler avoids.

A saturated server (requests queued, or its KV cache nearly full) would make a voter wait for
the first token while the other side is already answering; the sampler draws other models
instead. Saturation lives in the cache (Redis in production), one key per model, shared by the
web replicas and set by whichever supervisor watches that server. Each key expires after a few
polls, so a supervisor that died leaves no model marked busy for long.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from django.core.cache import cache

RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
# vLLM renamed the gauge: gpu_cache_usage_perc in the V0 engine, kv_cache_usage_perc in V1.
KV_CACHE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{[^}]*\})?\s+(\S+)")


def key(llm_id: int) -> str:
    return f"serving:saturated:{llm_id}"


@dataclass(frozen=True)
class Load:
    running: float
    waiting: float
    kv_cache: float  # fraction in use, 0..1

    def saturated(self, *, max_waiting: float, max_kv_cache: float) -> bool:
        return self.waiting > max_waiting or self.kv_cache >= max_kv_cache


def parse_metrics(text: str) -> Load:
    """The load in a Prometheus text exposition.

    Summed over the labels of each gauge (one series per engine under data parallelism), the KV
    cache at its fullest engine. A gauge the server does not export counts as zero.
    """
    totals: dict[str, list[float]] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = SAMPLE.match(line.strip())
        if match is None or match[1] not in (RUNNING, WAITING, *KV_CACHE):
            continue
        try:
            value = float(match[2])
        except ValueError:
            continue
        if math.isfinite(value):
            totals.setdefault(match[1], []).append(value)
    kv = next((totals[name] for name in KV_CACHE if name in totals), [0.0])
    return Load(running=sum(totals.get(RUNNING, [])), waiting=sum(totals.get(WAITING, [])), kv_cache=max(kv))


def mark(llm_id: int, saturated: bool, *, timeout: float) -> None:
    if saturated:
        cache.set(key(llm_id), True, timeout=timeout)
    else:
        cache.delete(key(llm_id))


def saturated_ids(ids: Iterable[int]) -> set[int]:
    """Which of these models are marked saturated: one cache round trip, whatever their number."""
    keys = {key(llm_id): llm_id for llm_id in ids}
    return {keys[found] for found in cache.get_many(list(keys))} if keys else set()

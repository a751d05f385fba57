"""Reading a vLLM server's load from its Prometheus metrics, and the sampler leaving busy models out."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from arena.services import draw_pair
from config.errors import Unavailable
from providers.models import LLM
from serving import load

# As vLLM 0.33 exposes them: one series per engine, labelled by model and engine.
METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="qwen-7b"} 3.0
vllm:num_requests_running{engine="1",model_name="qwen-7b"} 2.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="qwen-7b"} 0.0
vllm:num_requests_waiting{engine="1",model_name="qwen-7b"} 4.0
# HELP vllm:num_requests_waiting_by_reason Number of waiting requests by reason.
# TYPE vllm:num_requests_waiting_by_reason gauge
vllm:num_requests_waiting_by_reason{engine="0",model_name="qwen-7b",reason="capacity"} 9.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="qwen-7b"} 0.42
vllm:kv_cache_usage_perc{engine="1",model_name="qwen-7b"} 0.97
# HELP python_gc_objects_collected_total Objects collected during gc
# TYPE python_gc_objects_collected_total counter
python_gc_objects_collected_total{generation="0"} 1234.0
"""


def test_it_sums_queues_over_engines_and_takes_the_fullest_kv_cache() -> None:
    assert load.parse_metrics(METRICS) == load.Load(running=5.0, waiting=4.0, kv_cache=0.97)


def test_it_reads_the_kv_cache_gauge_of_older_engines() -> None:
    text = 'vllm:gpu_cache_usage_perc{model_name="m"} 0.5\nvllm:num_requests_waiting{model_name="m"} 1\n'
    assert load.parse_metrics(text) == load.Load(running=0.0, waiting=1.0, kv_cache=0.5)


def test_missing_or_unreadable_gauges_count_as_idle() -> None:
    text = "vllm:num_requests_running NaN\nvllm:num_requests_waiting abc\n<html>oops</html>\n"
    assert load.parse_metrics(text) == load.Load(running=0.0, waiting=0.0, kv_cache=0.0)


@pytest.mark.parametrize(
    ("server", "saturated"),
    [
        (load.Load(running=8, waiting=0, kv_cache=0.5), False),
        (load.Load(running=8, waiting=1, kv_cache=0.5), True),
        (load.Load(running=8, waiting=0, kv_cache=0.95), True),
    ],
)
def test_a_queue_or_a_full_kv_cache_is_saturation(server: load.Load, saturated: bool) -> None:
    assert server.saturated(max_waiting=0, max_kv_cache=0.95) is saturated


def test_a_mark_is_kept_in_the_cache_until_cleared() -> None:
    load.mark(7, True, timeout=60)
    load.mark(8, True, timeout=60)
    assert load.saturated_ids([7, 8, 9]) == {7, 8}
    load.mark(7, False, timeout=60)
    assert load.saturated_ids([7, 8, 9]) == {8}
    assert load.saturated_ids([]) == set()


def test_the_sampler_leaves_saturated_models_out(make_llm: Callable[..., LLM]) -> None:
    busy, *idle = (make_llm() for _ in range(3))
    load.mark(busy.pk, True, timeout=60)
    rng = random.Random(1)
    drawn = {llm.pk for _ in range(50) for llm in draw_pair(rng)}
    assert drawn == {m.pk for m in idle}

    load.mark(idle[0].pk, True, timeout=60)
    with pytest.raises(Unavailable):
        draw_pair(rng)

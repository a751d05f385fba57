"""The deployments file, the `vllm serve` command lines made from it, and the pinned vLLM's flags."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from serving.deployments import (
    FLAGS_FILE,
    Deployment,
    DeploymentFileError,
    flags_of,
    parse_deployments,
    vllm_flags,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "serving" / "deployments.example.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "deployments.yaml"
    path.write_text(text)
    return path


def test_it_builds_the_vllm_serve_command_line_from_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
host: gpu-1.internal
bind: 0.0.0.0
deployments:
  - name: qwen-7b
    model: Qwen/Qwen2.5-7B-Instruct
    port: 8001
    tensor_parallel_size: 2
    gpu_memory_utilization: 0.85
    max_model_len: 8192
    dtype: bfloat16
    gpus: "0,1"
    extra_args: ["--enable-prefix-caching", "--max-num-seqs", 64]
    display_name: Qwen 7B
    temperature: 0.6
    max_tokens: 512
""",
    )
    [deployment] = parse_deployments(path)

    assert deployment.command(["vllm"]) == [
        "vllm",
        "serve",
        "Qwen/Qwen2.5-7B-Instruct",
        "--served-model-name",
        "qwen-7b",
        "--host",
        "0.0.0.0",
        "--port",
        "8001",
        "--tensor-parallel-size",
        "2",
        "--gpu-memory-utilization",
        "0.85",
        "--dtype",
        "bfloat16",
        "--generation-config",
        "vllm",
        "--max-model-len",
        "8192",
        "--enable-prefix-caching",
        "--max-num-seqs",
        "64",
    ]
    assert deployment.gpus == "0,1"
    assert deployment.registry_entry() == {
        "name": "qwen-7b",
        "backend": "openai-compatible",
        "base_url": "http://gpu-1.internal:8001/v1",
        "model": "qwen-7b",
        "display_name": "Qwen 7B",
        "temperature": 0.6,
        "max_tokens": 512,
    }


def test_defaults_leave_the_context_length_to_the_model_and_listen_where_the_arena_calls(
    tmp_path: Path,
) -> None:
    [deployment] = parse_deployments(write(tmp_path, "deployments: [{name: m, model: org/m, port: 9000}]"))
    assert deployment.host == deployment.bind == "127.0.0.1"
    argv = deployment.command(["python", "fake.py"])
    assert argv[:4] == ["python", "fake.py", "serve", "org/m"]
    assert "--max-model-len" not in argv
    assert argv[argv.index("--tensor-parallel-size") + 1] == "1"
    assert argv[argv.index("--gpu-memory-utilization") + 1] == "0.9"


def test_every_flag_the_supervisor_emits_is_a_flag_of_the_pinned_vllm() -> None:
    full = Deployment(
        name="m",
        model="org/m",
        port=8000,
        host="127.0.0.1",
        bind="0.0.0.0",
        max_model_len=4096,
        extra_args=("--enforce-eager", "--no-enable-prefix-caching", "--kv-cache-dtype=fp8"),
    )
    deployments = [full, *parse_deployments(EXAMPLE)]
    for deployment in deployments:
        emitted = flags_of(deployment.command(["vllm"]))
        assert emitted and set(emitted) <= vllm_flags(), set(emitted) - vllm_flags()


def test_the_flags_list_is_that_of_the_pinned_version() -> None:
    header = FLAGS_FILE.read_text().splitlines()[0]
    pinned = re.search(r"^vllm==(\S+)$", (ROOT / "requirements-gpu.txt").read_text(), re.MULTILINE)
    assert pinned is not None
    assert f"vLLM {pinned[1]}," in header
    assert {"--served-model-name", "--port", "--generation-config", "--no-enforce-eager"} <= vllm_flags()


def test_the_example_file_is_valid() -> None:
    assert [d.name for d in parse_deployments(EXAMPLE)] == ["qwen2.5-7b-instruct", "llama-3.1-8b-instruct"]


def test_a_bad_file_reports_every_problem_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
host: 0.0.0.0
colour: blue
deployments:
  - name: a
    model: org/a
    port: 8001
    extra_args: ["--enable-prefix-cache", "--port", "9999"]
  - name: a
    port: 8001
    gpu_memory_utilization: 1.5
    dtype: int4
    gpus: first
  - name: "bad name"
    model: /no/such/weights
    port: 70000
    tensor_parallel_size: 0
    api_key: sk-secret
""",
    )
    with pytest.raises(DeploymentFileError) as caught:
        parse_deployments(path)
    assert caught.value.errors == [
        'unknown top-level key "colour"',
        '"host" is the address the arena calls: name this machine, not 0.0.0.0 (use "bind")',
        'deployment 1 ("a"): "extra_args": --enable-prefix-cache is not a flag of the pinned vLLM '
        "(vllm_flags.txt)",
        'deployment 1 ("a"): "extra_args": --port is set from this deployment\'s own keys',
        'deployment 2 ("a"): "model" is required: a Hugging Face hub id or a path to the weights',
        'deployment 2 ("a"): "gpu_memory_utilization" must be a fraction in (0, 1], not 1.5',
        'deployment 2 ("a"): "dtype" must be one of auto, half, float16, bfloat16, float, float32, '
        "not 'int4'",
        'deployment 2 ("a"): "gpus" must list GPU indices like "0" or "0,1", not \'first\'',
        'deployment 2 ("a"): the name is already used by deployment 1',
        'deployment 2 ("a"): port 8001 is already used by deployment 1',
        'deployment 3 ("bad name"): unknown key "api_key"',
        'deployment 3 ("bad name"): "name" is required: letters, digits, ".", "_", ":" or "-", '
        "not 'bad name'",
        'deployment 3 ("bad name"): "model" names a path that does not exist: /no/such/weights',
        'deployment 3 ("bad name"): "port" must be a whole number between 1 and 65535, not 70000',
        'deployment 3 ("bad name"): "tensor_parallel_size" must be a whole number between 1 and 64, not 0',
    ]


@pytest.mark.parametrize(
    "text",
    ["", "deployments: []", "- name: a", "deployments: {name: a}", "deployments: [unclosed"],
)
def test_a_file_without_a_list_of_deployments_is_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(DeploymentFileError):
        parse_deployments(write(tmp_path, text))


def test_the_compose_vllm_service_runs_the_pinned_version_with_known_flags() -> None:
    service = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["vllm"]
    pinned = re.search(r"^vllm==(\S+)$", (ROOT / "requirements-gpu.txt").read_text(), re.MULTILINE)
    assert pinned is not None and service["image"] == f"vllm/vllm-openai:v{pinned[1]}"
    argv = shlex.split(service["command"])
    assert set(flags_of(argv)) <= vllm_flags()
    assert argv[argv.index("--generation-config") + 1] == "vllm"
    assert service["healthcheck"]["start_period"] == "600s" and service["ipc"] == "host"

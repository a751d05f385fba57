"""Local vLLM deployments, declared in a YAML file, and the `vllm serve` command line of each.

The file is the single source of truth (no table): what runs on this GPU node, and how each
model appears in the registry. Every problem in it is reported at once, before any GPU work
starts; extra flags are checked against the flags of the pinned vLLM (`vllm_flags.txt`), so a
typo fails here instead of minutes into loading weights.

    host: 127.0.0.1          # address the arena reaches the servers at (default 127.0.0.1)
    bind: 0.0.0.0            # address the servers listen on (default: host)
    deployments:
      - name: qwen2.5-7b-instruct          # served model name, and the model's registry name
        model: Qwen/Qwen2.5-7B-Instruct     # Hugging Face hub id, or a path to the weights
        port: 8001
        tensor_parallel_size: 1
        gpu_memory_utilization: 0.9
        max_model_len: 8192
        dtype: auto
        gpus: "0"                           # CUDA_VISIBLE_DEVICES of this server (optional)
        extra_args: ["--enable-prefix-caching"]
        api_key_env: LOCAL_VLLM_KEY         # optional: the server then requires this key
        display_name: Qwen 2.5 7B Instruct  # registry fields, as in `load_models`
        organization: Alibaba
        license: Apache-2.0
        temperature: 0.7
        max_tokens: 1024
        weight: 1
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from providers.models import LLM

FLAGS_FILE = Path(__file__).with_name("vllm_flags.txt")
DTYPES = ("auto", "half", "float16", "bfloat16", "float", "float32")
# Flags the supervisor sets from the deployment's own keys; given again in extra_args they would
# contradict what the registry says about the server.
OWN_FLAGS = frozenset(
    {
        "--served-model-name",
        "--host",
        "--port",
        "--tensor-parallel-size",
        "-tp",
        "--gpu-memory-utilization",
        "--max-model-len",
        "--dtype",
        "--generation-config",
        "--api-key",
        "--model",
    }
)
KEYS = frozenset(
    {
        "name",
        "model",
        "port",
        "tensor_parallel_size",
        "gpu_memory_utilization",
        "max_model_len",
        "dtype",
        "gpus",
        "extra_args",
        "api_key_env",
        "display_name",
        "organization",
        "license",
        "temperature",
        "max_tokens",
        "weight",
    }
)
REGISTRY_KEYS = (
    "display_name",
    "organization",
    "license",
    "temperature",
    "max_tokens",
    "weight",
    "api_key_env",
)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")
GPUS = re.compile(r"\d+(,\d+)*")


class DeploymentFileError(Exception):
    """A deployments file that cannot be used; the message lists every problem, one per line."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class Deployment:
    name: str
    model: str
    port: int
    host: str  # the address the arena calls
    bind: str  # the address the server listens on
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None  # None: the model's own context length
    dtype: str = "auto"
    gpus: str = ""
    extra_args: tuple[str, ...] = ()
    registry: dict[str, Any] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def server_url(self) -> str:
        """Where the supervisor checks health and reads metrics: vLLM serves both outside /v1."""
        return f"http://{self.host}:{self.port}"

    def command(self, executable: list[str]) -> list[str]:
        """The `vllm serve` command line; sampling defaults stay vLLM's own (`--generation-config
        vllm`), so the temperature and max_tokens each call sends are the only ones that apply."""
        argv = [
            *executable,
            "serve",
            self.model,
            "--served-model-name",
            self.name,
            "--host",
            self.bind,
            "--port",
            str(self.port),
            "--tensor-parallel-size",
            str(self.tensor_parallel_size),
            "--gpu-memory-utilization",
            f"{self.gpu_memory_utilization:g}",
            "--dtype",
            self.dtype,
            "--generation-config",
            "vllm",
        ]
        if self.max_model_len is not None:
            argv += ["--max-model-len", str(self.max_model_len)]
        return argv + list(self.extra_args)

    def registry_entry(self) -> dict[str, Any]:
        """The model's row, in `providers.services.load_models`'s terms."""
        return {
            "name": self.name,
            "backend": LLM.Backend.OPENAI_COMPATIBLE.value,
            "base_url": self.base_url,
            "model": self.name,
            **self.registry,
        }


@cache
def vllm_flags() -> frozenset[str]:
    """The flags the pinned vLLM accepts (see the header of `vllm_flags.txt`)."""
    lines = FLAGS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def flags_of(argv: list[str]) -> list[str]:
    """The option flags of a command line (`--name` of `--name=value` too); values are left out."""
    return [arg.split("=", 1)[0] for arg in argv if arg.startswith("-") and not _is_number(arg)]


def _is_number(arg: str) -> bool:
    try:
        float(arg)
    except ValueError:
        return False
    return True


def parse_deployments(path: Path) -> list[Deployment]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DeploymentFileError([f"cannot read {path}: {exc}"]) from exc
    except yaml.YAMLError as exc:
        raise DeploymentFileError([f"{path.name} is not valid YAML: {exc}"]) from exc
    if not isinstance(data, dict) or not isinstance(data.get("deployments"), list) or not data["deployments"]:
        raise DeploymentFileError([f'{path.name}: expected a mapping with a non-empty list "deployments"'])
    errors = [f'unknown top-level key "{key}"' for key in data if key not in ("host", "bind", "deployments")]
    host, bind = data.get("host", "127.0.0.1"), data.get("bind", data.get("host", "127.0.0.1"))
    for key, value in (("host", host), ("bind", bind)):
        if not isinstance(value, str) or not value.strip() or "/" in value:
            errors.append(f'"{key}" must be a host name or an IP address, not {value!r}')
    if host in ("0.0.0.0", "::"):
        errors.append('"host" is the address the arena calls: name this machine, not 0.0.0.0 (use "bind")')

    deployments: list[Deployment] = []
    seen_names: dict[str, int] = {}
    seen_ports: dict[int, int] = {}
    for position, entry in enumerate(data["deployments"], start=1):
        name = entry.get("name") if isinstance(entry, dict) else None
        label = f'deployment {position} ("{name}")' if isinstance(name, str) else f"deployment {position}"
        problems = _problems(entry)
        if isinstance(name, str):
            if name in seen_names:
                problems.append(f"the name is already used by deployment {seen_names[name]}")
            seen_names.setdefault(name, position)
        port = entry.get("port") if isinstance(entry, dict) else None
        if isinstance(port, int) and not isinstance(port, bool):
            if port in seen_ports:
                problems.append(f"port {port} is already used by deployment {seen_ports[port]}")
            seen_ports.setdefault(port, position)
        errors.extend(f"{label}: {problem}" for problem in problems)
        if problems or errors:
            continue
        deployments.append(
            Deployment(
                name=entry["name"],
                model=entry["model"],
                port=entry["port"],
                host=host,
                bind=bind,
                tensor_parallel_size=entry.get("tensor_parallel_size", 1),
                gpu_memory_utilization=float(entry.get("gpu_memory_utilization", 0.9)),
                max_model_len=entry.get("max_model_len"),
                dtype=entry.get("dtype", "auto"),
                gpus=str(entry.get("gpus", "")),
                extra_args=tuple(str(arg) for arg in entry.get("extra_args", [])),
                registry={key: entry[key] for key in REGISTRY_KEYS if key in entry},
            )
        )
    if errors:
        raise DeploymentFileError(errors)
    return deployments


def _problems(entry: Any) -> list[str]:
    if not isinstance(entry, dict):
        return ["must be a mapping of keys to values"]
    problems = [f'unknown key "{key}"' for key in entry if key not in KEYS]

    def whole(key: str, low: int, high: int, *, required: bool = False) -> None:
        if key not in entry:
            if required:
                problems.append(f'"{key}" is required')
            return
        value = entry[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            problems.append(f'"{key}" must be a whole number between {low} and {high}, not {value!r}')

    name = entry.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name) or len(name) > 100:
        problems.append(f'"name" is required: letters, digits, ".", "_", ":" or "-", not {name!r}')
    model = entry.get("model")
    if not isinstance(model, str) or not model.strip():
        problems.append('"model" is required: a Hugging Face hub id or a path to the weights')
    elif model.startswith(("/", "./", "../", "~")) and not Path(model).expanduser().exists():
        problems.append(f'"model" names a path that does not exist: {model}')
    whole("port", 1, 65535, required=True)
    whole("tensor_parallel_size", 1, 64)
    whole("max_model_len", 1, 10_000_000)
    if "gpu_memory_utilization" in entry:
        value = entry["gpu_memory_utilization"]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
            problems.append(f'"gpu_memory_utilization" must be a fraction in (0, 1], not {value!r}')
    if entry.get("dtype", "auto") not in DTYPES:
        problems.append(f'"dtype" must be one of {", ".join(DTYPES)}, not {entry["dtype"]!r}')
    if "gpus" in entry and not GPUS.fullmatch(str(entry["gpus"])):
        problems.append(f'"gpus" must list GPU indices like "0" or "0,1", not {entry["gpus"]!r}')
    extra = entry.get("extra_args", [])
    if not isinstance(extra, list) or not all(isinstance(arg, str | int | float) for arg in extra):
        problems.append('"extra_args" must be a list of command-line arguments, like ["--enforce-eager"]')
    else:
        for flag in flags_of([str(arg) for arg in extra]):
            if flag in OWN_FLAGS:
                problems.append(f'"extra_args": {flag} is set from this deployment\'s own keys')
            elif flag not in vllm_flags():
                problems.append(f'"extra_args": {flag} is not a flag of the pinned vLLM ({FLAGS_FILE.name})')
    # The registry keys are checked by `load_models`, before any server starts.
    return problems

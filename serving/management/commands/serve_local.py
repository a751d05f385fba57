from __future__ import annotations

import asyncio
import glob
import os
import shlex
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from providers.services import ModelFileError
from serving.deployments import DeploymentFileError, parse_deployments
from serving.supervisor import Knobs, Supervisor


class Command(BaseCommand):
    help = (
        "Run the local vLLM deployments declared in FILE: start each server, put its model in the draw "
        "once healthy, restart it when it dies, take it out when it cannot be kept up. Stops them all on "
        "SIGTERM or Ctrl-C."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, help="deployments file (YAML)")
        parser.add_argument(
            "--skip-gpu-check",
            action="store_true",
            help="start even without an NVIDIA GPU (for a stand-in vllm executable, in tests)",
        )

    def handle(self, *args: Any, file: Path, skip_gpu_check: bool, **options: Any) -> None:
        try:
            deployments = parse_deployments(file)
        except DeploymentFileError as exc:
            raise CommandError(f"{file}: nothing started.\n{exc}") from exc
        executable = shlex.split(vllm_executable())
        if not executable or shutil.which(executable[0]) is None:
            raise CommandError(
                f"vLLM is not installed here: {executable[0] if executable else '(empty)'!r} was not found. "
                "Install it on the GPU machine with `pip install -r requirements-gpu.txt`, "
                "or set VLLM_EXECUTABLE to its path."
            )
        if not skip_gpu_check and not gpu_present():
            raise CommandError(
                "No NVIDIA GPU found (no /dev/nvidia* device, no working nvidia-smi): vLLM needs one. "
                "Run this on a GPU machine, or use hosted models instead."
            )
        unset = sorted(
            {env for d in deployments if (env := d.registry.get("api_key_env")) and not os.environ.get(env)}
        )
        if unset:
            raise CommandError(f"api_key_env names variables that are not set: {', '.join(unset)}")
        supervisor = Supervisor(
            deployments, executable=executable, knobs=Knobs.from_settings(), log=self.stdout.write
        )
        try:
            asyncio.run(self._supervise(supervisor))
        except ModelFileError as exc:
            raise CommandError(f"{file}: nothing started; the registry refused these models.\n{exc}") from exc

    async def _supervise(self, supervisor: Supervisor) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, supervisor.stop)
        await supervisor.run()


def vllm_executable() -> str:
    """The command that runs vLLM's CLI: setting, else environment, else `vllm` on the PATH."""
    return getattr(settings, "VLLM_EXECUTABLE", None) or os.environ.get("VLLM_EXECUTABLE") or "vllm"


def gpu_present() -> bool:
    if glob.glob("/dev/nvidia[0-9]*"):
        return True
    nvidia_smi = shutil.which("nvidia-smi")
    if nvidia_smi is None:
        return False
    try:
        return subprocess.run([nvidia_smi, "-L"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False

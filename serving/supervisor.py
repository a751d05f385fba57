"""Supervision of local `vllm serve` processes, one per deployment.

For each deployment: start the server, wait for `GET /health`, put the model in the draw, then
watch it (health and load every poll) until it dies or stops answering; take it out of the draw,
restart it after an exponential backoff, and after too many failures in a row give up and leave
it in outage with the reason. On stop, every server is terminated, then killed after a grace
period, and its model leaves the draw.

One asyncio loop watches every server; database work runs in threads (`asyncio.to_thread`), one
short transaction at a time, never across a network call.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, fields
from typing import Any, TypeVar

import httpx
from django.conf import settings
from django.db import DatabaseError, close_old_connections, transaction
from django.utils import timezone

from providers.models import LLM
from providers.services import load_models
from serving import load
from serving.deployments import Deployment

T = TypeVar("T")


@dataclass(frozen=True)
class Knobs:
    """Timings and thresholds; each is the setting SERVING_<NAME> when that is set."""

    startup_timeout: float = 1800.0  # loading a large model's weights from disk takes minutes
    poll_interval: float = 2.0  # between two health checks (and load readings) of a server
    health_timeout: float = 5.0
    health_failures: int = 3  # failed checks in a row that count as a dead server
    restart_backoff: float = 5.0  # first wait before a restart; doubles with each failure in a row
    restart_backoff_max: float = 300.0
    max_failures: int = 5  # failures in a row before giving up on a deployment
    stable_after: float = 600.0  # healthy this long, a server's failures are forgiven
    stop_grace: float = 30.0  # between SIGTERM and SIGKILL
    max_waiting: float = 0  # queued requests above this: saturated
    max_kv_cache: float = 0.95  # KV-cache use at or above this: saturated

    @classmethod
    def from_settings(cls) -> Knobs:
        values = {f.name: getattr(settings, f"SERVING_{f.name.upper()}", None) for f in fields(cls)}
        return cls(**{name: value for name, value in values.items() if value is not None})


class Supervisor:
    def __init__(
        self,
        deployments: list[Deployment],
        *,
        executable: list[str],
        knobs: Knobs,
        log: Callable[[str], None],
    ) -> None:
        self.deployments = deployments
        self.executable = executable
        self.knobs = knobs
        self.log = log
        self._stopping: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._relays: set[asyncio.Task[None]] = set()
        self._stop_requested = False

    async def run(self) -> None:
        """Supervise every deployment until `stop()`; registers them all first, or raises ModelFileError."""
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        if self._stop_requested:
            self._stopping.set()
        await _db(register, self.deployments)
        async with (
            httpx.AsyncClient(timeout=self.knobs.health_timeout) as client,
            asyncio.TaskGroup() as group,
        ):
            for deployment in self.deployments:
                group.create_task(self._supervise(deployment, client))
        await asyncio.gather(*self._relays)

    def stop(self) -> None:
        """Stop every server and return from `run`; safe to call from any thread or a signal handler."""
        self._stop_requested = True
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None:
            with suppress(RuntimeError):  # the loop already ended: nothing left to stop
                loop.call_soon_threadsafe(stopping.set)

    @property
    def stopping(self) -> bool:
        return self._stopping is not None and self._stopping.is_set()

    async def _supervise(self, deployment: Deployment, client: httpx.AsyncClient) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while not self.stopping:
            healthy_since: float | None = None
            try:
                process = await self._start(deployment)
            except OSError as exc:
                reason = f"the server could not be started: {exc}"
            else:
                try:
                    reason = await self._wait_healthy(deployment, process, client)
                    if reason is None:
                        healthy_since = loop.time()
                        self.log(f"{deployment.name}: serving at {deployment.base_url}")
                        reason = await self._watch(deployment, process, client)
                finally:
                    await self._terminate(deployment, process)
            if self.stopping:
                break
            if healthy_since is not None and loop.time() - healthy_since >= self.knobs.stable_after:
                failures = 0
            failures += 1
            if failures >= self.knobs.max_failures:
                await self._record(
                    outage, deployment, f"gave up after {failures} failures in a row; last: {reason}"
                )
                self.log(f"{deployment.name}: {reason}; gave up after {failures} failures in a row")
                return
            backoff = min(self.knobs.restart_backoff * 2 ** (failures - 1), self.knobs.restart_backoff_max)
            await self._record(outage, deployment, f"restarting after: {reason}")
            self.log(f"{deployment.name}: {reason}; restarting in {backoff:g} s")
            await self._pause(backoff)
        await self._record(outage, deployment, "stopped: its supervisor was shut down")
        self.log(f"{deployment.name}: stopped")

    async def _record(self, fn: Callable[..., T], *args: Any) -> T | None:
        """A registry change; a database that fails for a moment must not take the servers down."""
        try:
            return await _db(fn, *args)
        except (DatabaseError, LLM.DoesNotExist) as exc:
            self.log(f"{fn.__name__}: could not update the registry: {type(exc).__name__}: {exc}")
            return None

    async def _start(self, deployment: Deployment) -> asyncio.subprocess.Process:
        env = dict(os.environ)
        if deployment.gpus:
            env["CUDA_VISIBLE_DEVICES"] = deployment.gpus
        if deployment.registry.get("api_key_env"):
            # The key goes in the environment, never on the command line, which `ps` shows to all.
            env["VLLM_API_KEY"] = os.environ[deployment.registry["api_key_env"]]
        argv = deployment.command(self.executable)
        self.log(f"{deployment.name}: starting {' '.join(argv)}")
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            # Its own process group: vLLM starts engine and worker processes that hold GPU
            # memory, and stopping must reach all of them, not only the one we started.
            start_new_session=True,
        )
        relay = asyncio.create_task(self._relay(deployment, process))
        self._relays.add(relay)
        relay.add_done_callback(self._relays.discard)
        return process

    async def _relay(self, deployment: Deployment, process: asyncio.subprocess.Process) -> None:
        """The server's output, each line marked with its deployment: several servers share one log."""
        assert process.stdout is not None
        while True:
            try:
                line = await process.stdout.readline()
            except ValueError:  # a line over the reader's limit (a progress bar): the rest of it
                line = await process.stdout.read(2**16)
            if not line:
                return
            self.log(f"[{deployment.name}] {line.decode(errors='replace').rstrip()}")

    async def _wait_healthy(
        self, deployment: Deployment, process: asyncio.subprocess.Process, client: httpx.AsyncClient
    ) -> str | None:
        """None once the server answers its health check; else why it never did."""
        deadline = asyncio.get_running_loop().time() + self.knobs.startup_timeout
        while not self.stopping:
            if process.returncode is not None:
                return f"the server exited with code {process.returncode} before it was ready"
            if await _healthy(client, deployment):
                return None
            if asyncio.get_running_loop().time() > deadline:
                return f"the server was not ready within {self.knobs.startup_timeout:g} s"
            # Start-up ends at a moment nobody can predict: look often.
            await self._pause(min(1.0, self.knobs.poll_interval))
        return "stopping"

    async def _watch(
        self, deployment: Deployment, process: asyncio.subprocess.Process, client: httpx.AsyncClient
    ) -> str:
        """Put the model in the draw, then read health and load until the server dies or stops
        answering; why it ended."""
        failed = 0
        llm_id: int | None = None
        try:
            while not self.stopping:
                if process.returncode is not None:
                    return f"the server exited with code {process.returncode}"
                if await _healthy(client, deployment):
                    failed = 0
                    if llm_id is None:  # tried again each poll while the database is away
                        llm_id = await self._record(activate, deployment)
                    if llm_id is not None:
                        await self._read_load(deployment, client, llm_id)
                else:
                    failed += 1
                    if failed >= self.knobs.health_failures:
                        return f"{failed} health checks failed in a row"
                await self._pause(self.knobs.poll_interval)
            return "stopping"
        finally:
            if llm_id is not None:
                load.mark(llm_id, False, timeout=0)

    async def _read_load(self, deployment: Deployment, client: httpx.AsyncClient, llm_id: int) -> None:
        try:
            response = await client.get(f"{deployment.server_url}/metrics")
        except httpx.HTTPError:
            return  # the mark, if any, expires on its own
        if response.status_code != 200:
            return
        server = load.parse_metrics(response.text)
        saturated = server.saturated(max_waiting=self.knobs.max_waiting, max_kv_cache=self.knobs.max_kv_cache)
        # Outlives a few missed polls, not a dead supervisor.
        load.mark(llm_id, saturated, timeout=max(3 * self.knobs.poll_interval, 1.0))

    async def _terminate(self, deployment: Deployment, process: asyncio.subprocess.Process) -> None:
        """SIGTERM to the server's process group, SIGKILL to what is left after the grace period."""
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), self.knobs.stop_grace)
        if process.returncode is None:
            self.log(
                f"{deployment.name}: still running {self.knobs.stop_grace:g} s after SIGTERM; killing it"
            )
        # The leader may be gone while workers it started linger: the whole group goes.
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()

    async def _pause(self, seconds: float) -> None:
        """Sleep, cut short by `stop()`."""
        assert self._stopping is not None
        with suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)


async def _healthy(client: httpx.AsyncClient, deployment: Deployment) -> bool:
    try:
        response = await client.get(f"{deployment.server_url}/health")
    except httpx.HTTPError:
        return False
    return response.status_code == 200


async def _db(fn: Callable[..., T], *args: Any) -> T:
    def call() -> T:
        try:
            return fn(*args)
        finally:
            close_old_connections()

    return await asyncio.to_thread(call)


# --- the registry ---------------------------------------------------------------------------------


def register(deployments: list[Deployment]) -> None:
    """Create or update every deployment's model, out of the draw until its server is ready.

    All or none: a bad registry field stops everything before any server starts. A retired
    model stays retired; the supervisor only moves models between active and outage.
    """
    names = [d.name for d in deployments]
    with transaction.atomic():
        load_models([d.registry_entry() for d in deployments])
        LLM.objects.filter(name__in=names, state=LLM.State.ACTIVE).update(
            state=LLM.State.OUTAGE, state_reason=_stamped("starting: its local vLLM server is loading")
        )


def activate(deployment: Deployment) -> int:
    llm = LLM.objects.get(name=deployment.name)
    LLM.objects.filter(pk=llm.pk, state=LLM.State.OUTAGE).update(state=LLM.State.ACTIVE, state_reason="")
    return llm.pk


def outage(deployment: Deployment, reason: str) -> None:
    llm = LLM.objects.get(name=deployment.name)
    if llm.state != LLM.State.RETIRED:
        llm.mark_outage(_stamped(reason))


def _stamped(reason: str) -> str:
    return f"{timezone.now():%Y-%m-%d %H:%M} {reason}"

"""The supervisor against real child processes: `tests/serving/fake_vllm.py` plays `vllm serve`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from httpx_sse import connect_sse

from arena.models import Answer, Battle
from providers.models import LLM
from serving import load
from serving.deployments import parse_deployments
from serving.management.commands import serve_local
from serving.supervisor import Knobs, Supervisor

ROOT = Path(__file__).resolve().parents[2]
FAKE = [sys.executable, str(ROOT / "tests" / "serving" / "fake_vllm.py")]
FAST = Knobs(
    startup_timeout=10,
    poll_interval=0.05,
    health_timeout=1,
    health_failures=2,
    restart_backoff=0.05,
    restart_backoff_max=0.2,
    max_failures=3,
    stable_after=60,
    stop_grace=2,
)


def free_ports(n: int) -> list[int]:
    """n distinct free ports: held open together while chosen, so the kernel cannot hand one out twice."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def wait_for(condition: Callable[[], Any], timeout: float = 10, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def alive(pid: int) -> bool:
    """Whether a process runs; a zombie (killed, not yet reaped by its parent) does not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class Fakes:
    """The knobs and the start records of the fake servers (see fake_vllm.py)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def set(self, name: str, **knobs: Any) -> None:
        self.folder.joinpath(f"{name}.json").write_text(json.dumps(knobs))

    def starts(self, name: str) -> list[dict[str, Any]]:
        path = self.folder / f"{name}.starts"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def pids(self, name: str) -> list[int]:
        return [pid for start in self.starts(name) for pid in (start["pid"], start["worker"]) if pid]


@pytest.fixture
def fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Fakes:
    folder = tmp_path / "fakes"
    folder.mkdir()
    monkeypatch.setenv("FAKE_VLLM_DIR", str(folder))
    return Fakes(folder)


def deployments_file(tmp_path: Path, *names: str, **extra: Any) -> Path:
    ports = free_ports(len(names))
    entries = [
        {
            "name": name,
            "model": f"org/{name}-weights",
            "port": port,
            "max_model_len": 4096,
            "display_name": name.title(),
            "organization": "Local Org",
            "temperature": 0.5,
            "max_tokens": 100,
            **extra,
        }
        for name, port in zip(names, ports, strict=True)
    ]
    path = tmp_path / "deployments.yaml"
    path.write_text(json.dumps({"deployments": entries}))  # JSON is YAML
    return path


class Running:
    """A supervisor running in a thread of its own, as `serve_local` runs it in its process."""

    def __init__(self, path: Path, knobs: Knobs) -> None:
        self.logs: list[str] = []
        self.supervisor = Supervisor(
            parse_deployments(path), executable=FAKE, knobs=knobs, log=self.logs.append
        )
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            asyncio.run(self.supervisor.run())
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self.supervisor.stop()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the supervisor did not stop"
        assert self.error is None, self.error

    def logged(self, words: str) -> bool:
        return any(words in line for line in list(self.logs))


@pytest.fixture
def supervise(transactional_db: None) -> Iterator[Callable[..., Running]]:
    running: list[Running] = []

    def start(path: Path, knobs: Knobs = FAST) -> Running:
        running.append(Running(path, knobs))
        return running[-1]

    yield start
    for each in running:
        each.supervisor.stop()
        each.thread.join(timeout=30)


def state_of(name: str) -> tuple[str, str]:
    llm = LLM.objects.filter(name=name).first()
    return (llm.state, llm.state_reason) if llm else ("", "")


def is_active(name: str) -> bool:
    return state_of(name)[0] == LLM.State.ACTIVE


# --- start, health, registration -------------------------------------------------------------------


def test_it_starts_the_server_waits_for_health_then_registers_the_model(
    tmp_path: Path, fakes: Fakes, supervise: Callable[..., Running]
) -> None:
    fakes.set("alpha", start_delay=0.5)
    path = deployments_file(tmp_path, "alpha")
    [deployment] = parse_deployments(path)
    running = supervise(path)

    wait_for(lambda: LLM.objects.filter(name="alpha").exists(), what="registration")
    state, reason = state_of("alpha")
    assert state == LLM.State.OUTAGE and "starting" in reason  # not in the draw while loading
    wait_for(lambda: is_active("alpha"), what="the model in the draw")

    llm = LLM.objects.get(name="alpha")
    assert (llm.backend, llm.base_url, llm.model) == ("openai-compatible", deployment.base_url, "alpha")
    assert (llm.display_name, llm.organization, llm.temperature, llm.max_tokens) == (
        "Alpha",
        "Local Org",
        0.5,
        100,
    )
    [start] = fakes.starts("alpha")
    assert start["argv"][1:] == deployment.command([])  # what the fake was run with, flag for flag
    assert httpx.get(f"{deployment.base_url}/models").json()["data"][0]["id"] == "alpha"
    assert running.logged("[alpha] INFO Started server process")  # the server's own log, marked


def test_a_battle_against_two_supervised_models_works(
    tmp_path: Path, fakes: Fakes, supervise: Callable[..., Running], live_asgi: str
) -> None:
    fakes.set("alpha", text="Alpha answers from a local GPU.")
    fakes.set("beta", text="Beta answers too.", token_delay=0.01)
    supervise(deployments_file(tmp_path, "alpha", "beta"))
    wait_for(lambda: is_active("alpha") and is_active("beta"), what="both models in the draw")

    with httpx.Client(base_url=live_asgi, timeout=30) as web:
        response = web.post("/api/v1/battles/", json={"prompt": "Hello there"})
        assert response.status_code == 201, response.text
        with connect_sse(web, "GET", f"/api/v1/battles/{response.json()['id']}/stream") as source:
            events = [json.loads(sse.data) for sse in source.iter_sse()]

    assert events[-1]["state"] == "ready"
    battle = Battle.objects.get(pk=response.json()["id"])
    texts = {a.text for a in Answer.objects.filter(turn__battle=battle)}
    assert texts == {"Alpha answers from a local GPU.", "Beta answers too."}
    for answer in Answer.objects.filter(turn__battle=battle):
        assert answer.finish_reason == "stop" and answer.output_tokens and answer.input_tokens == 2
        assert answer.params == {"temperature": 0.5, "max_tokens": 100}


def test_a_key_named_in_the_file_protects_the_server_and_the_arena_sends_it(
    tmp_path: Path, fakes: Fakes, supervise: Callable[..., Running], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCAL_VLLM_KEY", "local-secret-1234")
    path = deployments_file(tmp_path, "alpha", api_key_env="LOCAL_VLLM_KEY")
    [deployment] = parse_deployments(path)
    supervise(path)
    wait_for(lambda: is_active("alpha"), what="the model in the draw")

    assert httpx.get(f"{deployment.base_url}/models").status_code == 401
    headers = {"authorization": "Bearer local-secret-1234"}
    assert httpx.get(f"{deployment.base_url}/models", headers=headers).status_code == 200
    assert LLM.objects.get(name="alpha").api_key() == "local-secret-1234"
    assert "local-secret-1234" not in " ".join(fakes.starts("alpha")[0]["argv"])  # never on the command line


# --- failures ----------------------------------------------------------------------------------------


def test_a_crashed_server_is_restarted_then_given_up_on_after_failing_again_and_again(
    tmp_path: Path, fakes: Fakes, supervise: Callable[..., Running]
) -> None:
    fakes.set("alpha", crash_after=0.3)
    running = supervise(deployments_file(tmp_path, "alpha"))

    wait_for(lambda: len(fakes.starts("alpha")) >= 2, what="a restart")
    first, second = fakes.starts("alpha")[:2]
    assert first["pid"] != second["pid"]
    assert running.logged("alpha: the server exited with code 1; restarting in 0.05 s")
    wait_for(lambda: "gave up" in state_of("alpha")[1], what="giving up")

    state, reason = state_of("alpha")
    assert state == LLM.State.OUTAGE
    assert reason.endswith("gave up after 3 failures in a row; last: the server exited with code 1")
    assert len(fakes.starts("alpha")) == 3
    assert not any(alive(pid) for pid in fakes.pids("alpha"))
    running.stop()


def test_a_server_that_never_gets_ready_is_given_up_on(
    tmp_path: Path, fakes: Fakes, supervise: Callable[..., Running]
) -> None:
    fakes.set("alpha", health="fail", worker=True)
    running = supervise(deployments_file(tmp_path, "alpha"), Knobs(**{**vars(FAST), "startup_timeout": 0.4}))

    wait_for(lambda: "gave up" in state_of("alpha")[1], what="giving up")
    assert state_of("alpha")[1].endswith("last: the server was not ready within 0.4 s")
    assert len(fakes.starts("alpha")) == 3
    assert not any(alive(pid) for pid in fakes.pids("alpha"))  # workers included
    running.stop()


def test_a_server_that_stops_answering_its_health_check_is_restarted(
    tmp_path: Path, fakes: Fakes, supervise: Callable[..., Running]
) -> None:
    running = supervise(deployments_file(tmp_path, "alpha"))
    wait_for(lambda: is_active("alpha"), what="the model in the draw")

    fakes.set("alpha", health="fail")
    wait_for(lambda: running.logged("alpha: 2 health checks failed in a row; restarting"), what="a restart")
    assert state_of("alpha")[0] == LLM.State.OUTAGE  # out of the draw while it restarts
    fakes.set("alpha")
    wait_for(
        lambda: is_active("alpha") and len(fakes.starts("alpha")) == 2, what="the model back in the draw"
    )


def test_a_server_that_cannot_be_started_is_given_up_on(
    tmp_path: Path, fakes: Fakes, transactional_db: None
) -> None:
    logs: list[str] = []
    supervisor = Supervisor(
        parse_deployments(deployments_file(tmp_path, "alpha")),
        executable=[str(tmp_path / "vanished-vllm")],
        knobs=FAST,
        log=logs.append,
    )
    asyncio.run(supervisor.run())  # returns: nothing left to supervise

    state, reason = state_of("alpha")
    assert state == LLM.State.OUTAGE and "gave up after 3 failures in a row" in reason
    assert "the server could not be started: [Errno 2] No such file or directory" in reason


# --- load --------------------------------------------------------------------------------------------


def test_a_server_with_a_queue_is_marked_saturated_until_it_clears(
    tmp_path: Path, fakes: Fakes, supervise: Callable[..., Running]
) -> None:
    supervise(deployments_file(tmp_path, "alpha", "beta"))
    wait_for(lambda: is_active("alpha") and is_active("beta"), what="both models in the draw")
    alpha, beta = LLM.objects.get(name="alpha").pk, LLM.objects.get(name="beta").pk

    fakes.set("alpha", running=8, waiting=3)
    fakes.set("beta", kv_cache=0.99)
    wait_for(lambda: load.saturated_ids([alpha, beta]) == {alpha, beta}, what="saturation")
    fakes.set("alpha", running=8, waiting=0)
    wait_for(lambda: load.saturated_ids([alpha, beta]) == {beta}, what="the queue to clear")


# --- stopping ----------------------------------------------------------------------------------------


def test_stopping_ends_every_server_and_its_workers_and_takes_the_models_out(
    tmp_path: Path, fakes: Fakes, supervise: Callable[..., Running]
) -> None:
    fakes.set("alpha", worker=True)
    fakes.set("beta", worker=True)
    running = supervise(deployments_file(tmp_path, "alpha", "beta"))
    wait_for(lambda: is_active("alpha") and is_active("beta"), what="both models in the draw")
    pids = fakes.pids("alpha") + fakes.pids("beta")
    assert len(pids) == 4 and all(alive(pid) for pid in pids)

    running.stop()
    assert not any(alive(pid) for pid in pids)
    for name in ("alpha", "beta"):
        state, reason = state_of(name)
        assert state == LLM.State.OUTAGE and reason.endswith("stopped: its supervisor was shut down")


def test_a_server_that_ignores_sigterm_is_killed_after_the_grace_period(
    tmp_path: Path, fakes: Fakes, supervise: Callable[..., Running]
) -> None:
    fakes.set("alpha", ignore_sigterm=True, worker=True)
    running = supervise(deployments_file(tmp_path, "alpha"), Knobs(**{**vars(FAST), "stop_grace": 0.3}))
    wait_for(lambda: is_active("alpha"), what="the model in the draw")

    running.stop()
    assert running.logged("alpha: still running 0.3 s after SIGTERM; killing it")
    assert not any(alive(pid) for pid in fakes.pids("alpha"))


def test_a_retired_model_stays_retired(
    tmp_path: Path, fakes: Fakes, supervise: Callable[..., Running], make_llm: Callable[..., LLM]
) -> None:
    make_llm(name="alpha", state=LLM.State.RETIRED)
    running = supervise(deployments_file(tmp_path, "alpha"))
    wait_for(lambda: fakes.starts("alpha") and running.logged("alpha: serving at"), what="the server")
    time.sleep(0.2)
    running.stop()
    assert state_of("alpha")[0] == LLM.State.RETIRED


# --- the command ---------------------------------------------------------------------------------------


def database_url() -> str:
    """The test database, for a `manage.py` run in another process."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user, password = quote(db["USER"] or "", safe=""), quote(db["PASSWORD"] or "", safe="")
    return f"postgres://{user}:{password}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"


def manage(*args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**os.environ, "VLLM_EXECUTABLE": " ".join(FAKE), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_serve_local_stops_its_servers_cleanly_on_sigterm(
    tmp_path: Path, fakes: Fakes, transactional_db: None
) -> None:
    fakes.set("alpha", worker=True)
    path = deployments_file(tmp_path, "alpha")
    command = manage("serve_local", str(path), "--skip-gpu-check", DATABASE_URL=database_url())
    try:
        wait_for(lambda: is_active("alpha"), timeout=30, what="the model in the draw")
        pids = fakes.pids("alpha")
        assert all(alive(pid) for pid in pids)
        command.send_signal(signal.SIGTERM)
        out, err = command.communicate(timeout=30)
    finally:
        command.kill()
    assert command.returncode == 0, err
    assert "alpha: stopped" in out
    assert not any(alive(pid) for pid in pids)
    assert state_of("alpha")[0] == LLM.State.OUTAGE


def test_without_vllm_it_says_so_and_exits_non_zero(tmp_path: Path) -> None:
    command = manage("serve_local", str(deployments_file(tmp_path, "alpha")), VLLM_EXECUTABLE="/no/such/vllm")
    _, err = command.communicate(timeout=60)
    assert command.returncode == 1
    assert "vLLM is not installed here: '/no/such/vllm' was not found" in err


def test_without_a_gpu_it_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    settings.VLLM_EXECUTABLE = " ".join(FAKE)
    monkeypatch.setattr(serve_local, "gpu_present", lambda: False)
    with pytest.raises(CommandError, match="No NVIDIA GPU found"):
        call_command("serve_local", str(deployments_file(tmp_path, "alpha")))


def test_a_model_the_registry_refuses_stops_everything_before_any_server_starts(
    tmp_path: Path, fakes: Fakes, settings: Any, transactional_db: None
) -> None:
    settings.VLLM_EXECUTABLE = " ".join(FAKE)
    path = deployments_file(tmp_path, "alpha", temperature=5)
    with pytest.raises(CommandError, match='"temperature" must be between 0 and 2'):
        call_command("serve_local", str(path), "--skip-gpu-check")
    assert fakes.starts("alpha") == [] and not LLM.objects.exists()


def test_a_missing_key_variable_is_refused(tmp_path: Path, settings: Any) -> None:
    settings.VLLM_EXECUTABLE = " ".join(FAKE)
    path = deployments_file(tmp_path, "alpha", api_key_env="NO_SUCH_VARIABLE_SET")
    with pytest.raises(CommandError, match="NO_SUCH_VARIABLE_SET"):
        call_command("serve_local", str(path), "--skip-gpu-check")


def test_knobs_come_from_the_settings(settings: Any) -> None:
    settings.SERVING_POLL_INTERVAL = 0.5
    settings.SERVING_MAX_FAILURES = 7
    knobs = Knobs.from_settings()
    assert (knobs.poll_interval, knobs.max_failures, knobs.stop_grace) == (0.5, 7, Knobs.stop_grace)

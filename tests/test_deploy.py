"""The deployment files: valid, in agreement with each other and with the settings, and working.

Kubernetes manifests are checked offline against the API's own schemas (kubernetes-validate ships
them), strictly: an unknown or misspelt field fails. docker-compose.yml is read as compose reads
it (YAML with merge keys) and checked against the Compose Specification's schema. The last tests
start the web tier as the manifests start it, with their settings, and ask it what the probes ask.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from cryptography.fernet import Fernet
from django.urls import NoReverseMatch, reverse

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
BIN = Path(sys.executable).parent
# The oldest Kubernetes release still supported upstream when these were written, and the newest
# the validator knows: a field removed or added between them shows here.
KUBERNETES_VERSIONS = ["1.30", kubernetes_validate.latest_version()]
# What docs/deploy.md asks of PostgreSQL (max_connections) for the manifests as they are.
POSTGRES_MAX_CONNECTIONS = 200
APP_CONTAINERS = {"web", "worker", "beat", "migrate", "wait-for-migrations"}


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def resource(kind: str, name: str) -> dict[str, Any]:
    found = [
        d
        for p in manifest_files()
        for d in documents(p)
        if (d["kind"], d["metadata"]["name"]) == (kind, name)
    ]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pod_spec(kind: str, name: str) -> dict[str, Any]:
    return resource(kind, name)["spec"]["template"]["spec"]


def container(kind: str, name: str, container_name: str) -> dict[str, Any]:
    (found,) = [c for c in pod_spec(kind, name)["containers"] if c["name"] == container_name]
    return found


def app_containers() -> Iterator[dict[str, Any]]:
    for path in manifest_files():
        for doc in documents(path):
            if "template" in doc.get("spec", {}):
                spec = doc["spec"]["template"]["spec"]
                for c in spec.get("initContainers", []) + spec["containers"]:
                    if c["name"] in APP_CONTAINERS:
                        yield c


def config() -> dict[str, str]:
    return resource("ConfigMap", "arena-config")["data"]


def example_secret() -> dict[str, str]:
    return documents(K8S / "secret.example.yaml")[0]["stringData"]


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def gunicorn_settings(**env: str) -> dict[str, Any]:
    saved = os.environ.copy()
    os.environ.update(env)
    try:
        return runpy.run_path(str(ROOT / "config" / "gunicorn.py"))
    finally:
        os.environ.clear()
        os.environ.update(saved)


def variables_the_code_reads() -> set[str]:
    settings = (ROOT / "config" / "settings.py").read_text()
    names = set(re.findall(r'env(?:\.\w+|_float)\(\s*"([A-Z][A-Z0-9_]*)"', settings))
    names |= set(
        re.findall(r'os\.environ\.get\("([A-Z][A-Z0-9_]*)"', (ROOT / "config" / "gunicorn.py").read_text())
    )
    assert {"DEBUG", "SECRET_KEY", "DATABASE_URL", "TRUSTED_PROXIES", "WEB_CONCURRENCY"} <= names
    # Vendor keys are read by the name the model registry gives (api_key_env); .env.example lists them.
    documented = set(re.findall(r"^# ([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M))
    return names | {name for name in documented if name.endswith("_API_KEY")}


# --- Kubernetes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_every_manifest_is_valid_against_the_kubernetes_schemas(path: Path) -> None:
    docs = documents(path)
    assert docs
    for doc in docs:
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                where = ".".join(str(p) for p in error.path)
                name = f"{doc['kind']}/{doc['metadata']['name']}"
                pytest.fail(f"{path.name} {name} on {version}: {where}: {error.message}")


def test_the_kustomization_lists_every_manifest_but_the_example_secret() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    listed = set(kustomization["resources"])
    assert all((K8S / name).is_file() for name in listed)
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert on_disk - listed == {"secret.example.yaml"}
    assert kustomization["namespace"] == resource("Namespace", "arena")["metadata"]["name"]
    assert [image["name"] for image in kustomization["images"]] == ["arena"]


def test_the_example_secret_holds_placeholders_only_and_what_production_requires() -> None:
    secret = example_secret()
    assert {"SECRET_KEY", "FIELD_ENCRYPTION_KEY", "DATABASE_URL"} <= secret.keys()
    assert all("REPLACE-ME" in value for value in secret.values())
    assert "EXAMPLE ONLY" in (K8S / "secret.example.yaml").read_text()


def test_every_pod_of_the_arena_reads_its_settings_from_the_configmap_and_the_secret() -> None:
    containers = list(app_containers())
    assert len(containers) == 6  # web, worker, beat, migrate, and the two waits for migrations
    for c in containers:
        assert c["image"] == "arena"
        assert c["envFrom"] == [
            {"configMapRef": {"name": "arena-config"}},
            {"secretRef": {"name": "arena-secrets"}},
        ], c["name"]
        assert "env" not in c  # one place for each value
    assert documents(K8S / "secret.example.yaml")[0]["metadata"]["name"] == "arena-secrets"


def test_every_variable_the_deployments_set_is_one_the_code_reads() -> None:
    known = variables_the_code_reads()
    services = compose()["services"]
    compose_names = {
        name
        for service in ("web", "worker", "beat", "migrate", "app")
        for name in services[service]["environment"]
    }
    for origin, names in [
        ("configmap.yaml", set(config())),
        ("secret.example.yaml", set(example_secret())),
        ("docker-compose.yml", compose_names),
    ]:
        assert names - known == set(), origin
    assert config()["DEBUG"] == "false"
    for service in ("web", "worker", "beat", "migrate", "app"):
        assert services[service]["environment"]["DEBUG"] == "false"


def test_the_web_tier_listens_where_the_service_the_ingress_and_the_compose_proxy_point() -> None:
    port = int(gunicorn_settings()["bind"].rsplit(":", 1)[1])
    (web_port,) = container("Deployment", "arena-web", "web")["ports"]
    assert web_port == {"name": "http", "containerPort": port}
    service = resource("Service", "arena-web")["spec"]
    assert service["ports"][0]["targetPort"] == "http"
    assert service["selector"] == resource("Deployment", "arena-web")["spec"]["selector"]["matchLabels"]
    backend = resource("Ingress", "arena")["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "arena-web", "port": {"name": service["ports"][0]["name"]}}
    services = compose()["services"]
    assert services["web"]["ports"] == [f"{port}:{port}"]
    assert services["app"]["expose"] == [str(port)]
    assert f"reverse_proxy app:{port}" in (ROOT / "deploy" / "compose" / "Caddyfile").read_text()
    redis = resource("Service", "arena-redis")["spec"]["ports"][0]["port"]
    assert config()["REDIS_URL"] == f"redis://arena-redis:{redis}/0"


def test_the_web_tier_behind_a_proxy_trusts_exactly_that_proxy() -> None:
    assert config()["TRUSTED_PROXIES"] == "1"
    services = compose()["services"]
    assert services["app"]["environment"]["TRUSTED_PROXIES"] == "1"
    # Published, the app could be reached around the proxy, with an X-Forwarded-For of its own.
    assert "ports" not in services["app"]
    assert "443:443" in services["proxy"]["ports"]


def test_the_probes_ask_healthz_as_the_ingress_would() -> None:
    web = container("Deployment", "arena-web", "web")
    allowed = config()["ALLOWED_HOSTS"].split(",")
    host = resource("Ingress", "arena")["spec"]["rules"][0]["host"]
    assert host in allowed
    try:
        ready_path = reverse("readyz")
    except NoReverseMatch:
        ready_path = reverse("healthz")  # no /readyz yet: both probes ask /healthz
    for probe, path in [
        ("startupProbe", "/healthz"),
        ("readinessProbe", ready_path),
        ("livenessProbe", "/healthz"),
    ]:
        get = web[probe]["httpGet"]
        assert (get["path"], get["port"]) == (path, "http"), probe
        headers = {h["name"]: h["value"] for h in get["httpHeaders"]}
        assert headers == {"Host": host, "X-Forwarded-Proto": "https"}, probe
    # A database outage takes pods out of the Service well before it restarts them.
    live, ready = web["livenessProbe"], web["readinessProbe"]
    assert (
        live["periodSeconds"] * live["failureThreshold"]
        > 3 * ready["periodSeconds"] * ready["failureThreshold"]
    )


def test_a_stopping_web_pod_lets_its_longest_stream_end() -> None:
    total = config()["UPSTREAM_TOTAL_TIMEOUT"]
    graceful = gunicorn_settings(UPSTREAM_TOTAL_TIMEOUT=total)["graceful_timeout"]
    spec = pod_spec("Deployment", "arena-web")
    pause = int(spec["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert spec["terminationGracePeriodSeconds"] >= pause + graceful
    annotations = resource("Ingress", "arena")["metadata"]["annotations"]
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) > float(total)
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"


def test_the_autoscaler_owns_the_web_replicas_and_beat_runs_alone() -> None:
    hpa = resource("HorizontalPodAutoscaler", "arena-web")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "arena-web"}
    assert 2 <= hpa["minReplicas"] < hpa["maxReplicas"]
    assert "replicas" not in resource("Deployment", "arena-web")["spec"]
    beat = resource("Deployment", "arena-beat")["spec"]
    assert (beat["replicas"], beat["strategy"]["type"]) == (1, "Recreate")
    assert "deploy" not in compose()["services"]["beat"]


def test_the_web_tier_at_its_maximum_fits_postgresqls_connections() -> None:
    pool = int(config()["DB_POOL_MAX_SIZE"])
    web = resource("HorizontalPodAutoscaler", "arena-web")["spec"]["maxReplicas"] * int(
        config()["WEB_CONCURRENCY"]
    )
    worker = resource("Deployment", "arena-worker")
    command = worker["spec"]["template"]["spec"]["containers"][0]["command"]
    concurrency = int(next(arg for arg in command if arg.startswith("--concurrency=")).split("=")[1])
    workers = worker["spec"]["replicas"] * concurrency
    # Beat, the migrations and an operator's shell: one each.
    assert (web + workers) * pool + 3 <= POSTGRES_MAX_CONNECTIONS
    assert f"max_connections={POSTGRES_MAX_CONNECTIONS}" in (ROOT / "docs" / "deploy.md").read_text()


def test_migrations_run_once_as_a_job_and_the_pods_wait_for_them() -> None:
    job = resource("Job", "arena-migrate")["spec"]["template"]["spec"]
    assert job["containers"][0]["command"] == ["python", "manage.py", "migrate", "--noinput"]
    for name in ("arena-web", "arena-worker"):
        (wait,) = pod_spec("Deployment", name)["initContainers"]
        assert "manage.py migrate --check" in wait["command"][-1]
        assert "migrate" not in " ".join(pod_spec("Deployment", name)["containers"][0]["command"])


def test_every_container_has_requests_and_limits_and_runs_as_the_images_user() -> None:
    uid = int(re.search(r"useradd .*--uid (\d+)", (ROOT / "Dockerfile").read_text()).group(1))
    for path in manifest_files():
        for doc in documents(path):
            if "template" not in doc.get("spec", {}):
                continue
            spec = doc["spec"]["template"]["spec"]
            assert spec["securityContext"]["runAsNonRoot"] is True
            for c in spec.get("initContainers", []) + spec["containers"]:
                assert {"cpu", "memory"} <= c["resources"]["requests"].keys(), c["name"]
                assert {"cpu", "memory"} <= c["resources"]["limits"].keys(), c["name"]
                assert c["securityContext"]["allowPrivilegeEscalation"] is False
            if spec["containers"][0]["name"] in APP_CONTAINERS:
                assert spec["securityContext"]["runAsUser"] == uid


# --- docker compose ------------------------------------------------------------------------------


def test_the_compose_file_is_valid_against_the_compose_specification() -> None:
    schema = json.loads((ROOT / "tests" / "data" / "compose-spec" / "compose-spec.json").read_text())
    errors = [
        f"{'.'.join(map(str, e.path))}: {e.message}"
        for e in jsonschema.Draft202012Validator(schema).iter_errors(compose())
    ]
    assert errors == []


def test_compose_keeps_its_default_services_and_adds_the_production_profile() -> None:
    services = compose()["services"]
    default = {name for name, s in services.items() if "profiles" not in s}
    assert default == {"web", "worker", "beat", "db", "redis"}
    prod = {name for name, s in services.items() if "prod" in s.get("profiles", [])}
    assert prod == {"migrate", "app", "proxy", "vllm"}
    for name, service in services.items():
        for needed in service.get("depends_on", {}):
            # A service waits only for one that runs wherever it runs: a default service never
            # waits for one that a profile starts.
            if "profiles" in services[needed]:
                assert set(service.get("profiles", ["default"])) <= set(services[needed]["profiles"]), name
    app = services["app"]["depends_on"]
    assert app["migrate"] == {"condition": "service_completed_successfully"}
    assert "migrate" not in services["app"]["command"]
    assert services["proxy"]["depends_on"] == {"app": {"condition": "service_healthy"}}


def test_compose_and_kubernetes_run_the_same_commands() -> None:
    services = compose()["services"]
    assert shlex.split(services["app"]["command"]) == container("Deployment", "arena-web", "web")["command"]
    assert (
        shlex.split(services["migrate"]["command"]) == container("Job", "arena-migrate", "migrate")["command"]
    )
    worker = container("Deployment", "arena-worker", "worker")["command"]
    assert shlex.split(services["worker"]["command"]) == worker[: worker.index("-Q")]
    beat = container("Deployment", "arena-beat", "beat")["command"]
    assert shlex.split(services["beat"]["command"]) == beat
    assert services["web"]["healthcheck"]["test"] == ["CMD", "python", "deploy/healthcheck.py"]
    assert services["app"]["healthcheck"] == services["web"]["healthcheck"]


# --- The web tier, started as the manifests start it ----------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, headers: dict[str, str]) -> int:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except urllib.error.URLError:
        return 0  # not listening yet


@pytest.fixture
def manifest_env(tmp_path: Path) -> dict[str, str]:
    """The ConfigMap's settings, a real Secret's values, and this machine's services in place of the
    cluster's (a name like arena-redis must not be looked up from a test)."""
    env = {k: v for k, v in os.environ.items() if k not in variables_the_code_reads()}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # another server's folder, if a test left one set
    env.update(config())
    env.update(
        SECRET_KEY="s" * 20 + "Zq8-vR3_pL9!mN2@xT7#bW5$hJ4%cF6^gD1&",
        FIELD_ENCRYPTION_KEY=Fernet.generate_key().decode(),
        DATABASE_URL=f"sqlite:///{tmp_path / 'deploy.sqlite3'}",
        WEB_CONCURRENCY="1",
    )
    env.pop("REDIS_URL")
    if os.environ.get("REDIS_URL"):
        env["REDIS_URL"] = os.environ["REDIS_URL"]
    return env


def test_the_manifests_settings_pass_djangos_deploy_check(manifest_env: dict[str, str]) -> None:
    check = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=manifest_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_web_tier_started_as_the_manifest_says_answers_its_probes(
    manifest_env: dict[str, str], tmp_path: Path
) -> None:
    web = container("Deployment", "arena-web", "web")
    port = free_port()
    command = [str(BIN / web["command"][0]), *web["command"][1:], "--bind", f"127.0.0.1:{port}"]
    log = tmp_path / "gunicorn.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(command, cwd=ROOT, env=manifest_env, stdout=out, stderr=subprocess.STDOUT)
    try:
        probe = web["readinessProbe"]["httpGet"]
        headers = {h["name"]: h["value"] for h in probe["httpHeaders"]}
        url = f"http://127.0.0.1:{port}{probe['path']}"
        deadline = time.monotonic() + 60
        while (status := get(url, headers)) != 200:
            assert server.poll() is None and time.monotonic() < deadline, (status, log.read_text())
            time.sleep(0.25)
        # What the probe's headers are for: without them Django refuses the host, or redirects to
        # HTTPS before the check runs.
        assert get(url, {}) == 400
        assert get(url, {"Host": headers["Host"]}) == 301
        # The compose health check asks the same way.
        check = subprocess.run(
            [sys.executable, "deploy/healthcheck.py"],
            cwd=ROOT,
            env={**manifest_env, "HEALTHCHECK_PORT": str(port)},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert check.returncode == 0, check.stdout + check.stderr
        assert check.stdout.startswith("healthz: 200")
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_compose_health_check_fails_when_the_answer_is_not_200(tmp_path: Path) -> None:
    port = free_port()
    check = subprocess.run(
        [sys.executable, "deploy/healthcheck.py"],
        cwd=ROOT,
        env={"HEALTHCHECK_PORT": str(port), "ALLOWED_HOSTS": "arena.example.org", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 1
    assert "healthz:" in check.stdout

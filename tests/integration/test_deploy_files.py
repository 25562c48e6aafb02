"""deploy/ checked against its schemas and against the code it runs.

The compose file against the Compose Specification's JSON Schema (vendored in schemas/deploy/, validated
with check-jsonschema) and the Kubernetes manifests against the Kubernetes API schemas (kubernetes-validate,
strict); then what they name: real ``spendgate`` subcommands with real flags, real settings, probes on
real routes and ports of the real processes, and grace periods that cover the services' shutdown.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import click
import yaml

from spendgate.cli import main as spendgate_cli
from spendgate.core.config import ENV_PREFIX, NESTED, Settings
from spendgate.proxy.service import FINAL_FLUSH_S
from tests.support.ports import free_port
from tests.support.proxy_process import SpendgateProcess, service_process, spendgate_argv
from tests.support.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "docker-compose.yml"
K8S = ROOT / "deploy" / "k8s" / "spendgate.yaml"
COMPOSE_SCHEMA = ROOT / "schemas" / "deploy" / "compose-spec.json"
LAYOUT = {"migrate", "proxy", "ledger", "alerter", "forecaster", "guard", "reconciler", "admin"}
"""The processes of the scale-out layout: what tests/integration/test_separate_processes.py runs, plus the
migration job, the reconciler (issue 16; the same worker shape as the forecaster) and the admin API."""


def tool(name: str) -> str:
    """A validator installed with the test extras (next to this interpreter, else on the PATH)."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    assert found, f"{name} is not installed (pip install -e '.[test]')"
    return found


def check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("check-jsonschema"), "--schemafile", str(COMPOSE_SCHEMA), str(path)],
                          capture_output=True, text=True, timeout=60)


def check_k8s(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("kubernetes-validate"), "--strict", "--quiet", str(path)],
                          capture_output=True, text=True, timeout=60)


def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict)
    return doc


def spendgate_services() -> dict[str, dict[str, Any]]:
    """Compose services built from this repository (the others are PostgreSQL and Kafka)."""
    return {name: svc for name, svc in compose()["services"].items() if "build" in svc}


def manifests() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(K8S.read_text()) if d]


def k8s_containers() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(pod spec, container) of every workload running the spendgate image."""
    for doc in manifests():
        pod = doc.get("spec", {}).get("template", {}).get("spec")
        for container in (pod or {}).get("containers", []):
            if str(container["image"]).startswith("spendgate:"):
                yield pod, container


def k8s_env(container: dict[str, Any]) -> dict[str, str]:
    config = next(d["data"] for d in manifests() if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "spendgate")
    return {**config, **{e["name"]: e.get("value", "<secret>") for e in container.get("env", [])}}


def drain_s(env: dict[str, str]) -> float:
    return float(env.get("SPENDGATE_DRAIN_TIMEOUT_S", Settings.model_fields["drain_timeout_s"].default))


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)s", value)
    assert match, value
    return float(match[1])


def test_compose_file_passes_the_compose_spec() -> None:
    """check-jsonschema accepts deploy/docker-compose.yml against the vendored Compose Specification."""
    out = check_compose(COMPOSE)
    assert out.returncode == 0, out.stdout + out.stderr


def test_compose_validator_rejects_a_broken_file(tmp_path: Path) -> None:
    """A misspelt service key fails the compose check: the check can fail."""
    doc = compose()
    doc["services"]["proxy"]["comand"] = doc["services"]["proxy"].pop("command")
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(yaml.safe_dump(doc))
    out = check_compose(broken)
    assert out.returncode != 0 and "comand" in out.stdout + out.stderr


def test_k8s_manifests_pass_the_kubernetes_schemas() -> None:
    """kubernetes-validate (strict: no unknown fields) accepts every resource in deploy/k8s/spendgate.yaml."""
    out = check_k8s(K8S)
    assert out.returncode == 0, out.stdout + out.stderr


def test_k8s_validator_rejects_a_broken_manifest(tmp_path: Path) -> None:
    """A misspelt probe field fails the Kubernetes check: the check can fail."""
    docs = manifests()
    proxy = next(d for d in docs if d["metadata"]["name"] == "spendgate-proxy" and d["kind"] == "Deployment")
    container = proxy["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["httpGet"]["pathh"] = container["readinessProbe"]["httpGet"].pop("path")
    broken = tmp_path / "spendgate.yaml"
    broken.write_text(yaml.safe_dump_all(docs))
    out = check_k8s(broken)
    assert out.returncode != 0 and "pathh" in out.stdout + out.stderr


def test_both_describe_the_layout_with_real_commands_and_flags() -> None:
    """Compose and Kubernetes run the same processes, each a real `spendgate` subcommand with flags it takes."""
    compose_commands = [svc["command"] for svc in spendgate_services().values()]
    k8s_commands = [c["args"] for _, c in k8s_containers()]
    assert {c[0] for c in compose_commands} == {c[0] for c in k8s_commands} == LAYOUT
    for argv in [*compose_commands, *k8s_commands]:
        command = spendgate_cli.commands.get(argv[0])
        assert command is not None, f"spendgate has no {argv[0]!r} command"
        try:
            command.make_context(argv[0], list(argv[1:]))
        except click.UsageError as exc:
            raise AssertionError(f"spendgate {' '.join(argv)}: {exc.format_message()}") from exc


def setting_exists(name: str) -> bool:
    model: Any = Settings
    for part in name[len(ENV_PREFIX):].lower().split(NESTED):
        fields = getattr(model, "model_fields", None)
        if fields is None:
            return True  # a key inside a mapping setting (alerts.secrets.NAME)
        if part not in fields:
            return False
        model = fields[part].annotation
    return True


def test_every_spendgate_variable_is_a_real_setting() -> None:
    """Each SPENDGATE_* variable the deploy files set names a field of Settings (a typo would be ignored)."""
    names = {n for svc in spendgate_services().values() for n in svc.get("environment", {})}
    names |= {n for _, c in k8s_containers() for n in k8s_env(c)}
    names |= {n for n in (re.findall(r"SPENDGATE_\w+", (ROOT / "deploy" / "Dockerfile").read_text()))}
    spendgate_names = {n for n in names if n.startswith(ENV_PREFIX)}
    assert {"SPENDGATE_DATABASE_URL", "SPENDGATE_BUS", "SPENDGATE_UPSTREAM_KEY"} <= spendgate_names
    assert [n for n in sorted(spendgate_names) if not setting_exists(n)] == []


def test_grace_periods_cover_the_services_shutdown() -> None:
    """The proxy's grace period covers preStop + in-flight drain + spool flush; the alerter's its delivery drain."""
    for pod, container in k8s_containers():
        env = k8s_env(container)
        grace = pod.get("terminationGracePeriodSeconds", 30)
        if container["args"][0] == "proxy":
            pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
            assert pre_stop[0] == "sleep"
            assert grace > float(pre_stop[1]) + drain_s(env) + FINAL_FLUSH_S
        if container["args"][0] == "alerter":
            assert grace > drain_s(env)
    services = spendgate_services()
    env = services["proxy"]["environment"]
    assert seconds(services["proxy"]["stop_grace_period"]) > drain_s(env) + FINAL_FLUSH_S
    assert seconds(services["alerter"]["stop_grace_period"]) > drain_s(env)


def proxy_probes() -> Iterator[tuple[str, int]]:
    """(path, port) of every HTTP probe on a proxy, in Kubernetes and in compose."""
    for _, container in k8s_containers():
        if container["args"][0] != "proxy":
            continue
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            get = container.get(kind, {}).get("httpGet")
            if get is not None:
                port = ports.get(get["port"], get["port"])
                assert container["args"] == ["proxy", "--port", str(port)]
                yield get["path"], port
    proxy = spendgate_services()["proxy"]
    match = re.search(r"http://127\.0\.0\.1:(\d+)(/\S*?)'", " ".join(proxy["healthcheck"]["test"]))
    assert match, proxy["healthcheck"]
    assert proxy["command"] == ["proxy", "--port", match[1]]
    yield match[2], int(match[1])


async def test_proxy_probes_answer_on_a_real_proxy(db_url: str, tmp_path: Path) -> None:
    """Every probe path the deploy files give the proxy answers 200 on a running `spendgate proxy`."""
    probes = set(proxy_probes())
    assert probes
    proxy = SpendgateProcess([*spendgate_argv(), "proxy"], data_dir=tmp_path / "proxy",
                             env={"SPENDGATE_DATABASE_URL": db_url, "SPENDGATE_BUS": "postgres"})
    await proxy.start()
    try:
        async with aiohttp.ClientSession() as http:
            for path, _ in sorted(probes):
                async with http.get(f"http://127.0.0.1:{proxy.port}{path}") as resp:
                    assert resp.status == 200, (path, resp.status)
    finally:
        assert await proxy.terminate() == 0, proxy.output()


async def test_admin_probe_port_is_where_the_admin_api_listens(db_url: str, tmp_path: Path) -> None:
    """The admin probes' port is the one `spendgate admin` listens on with the manifests' settings."""
    admin = next(c for _, c in k8s_containers() if c["args"] == ["admin"])
    ports = {p["name"]: p["containerPort"] for p in admin["ports"]}
    for kind in ("readinessProbe", "livenessProbe"):
        assert ports[admin[kind]["tcpSocket"]["port"]] == int(k8s_env(admin)["SPENDGATE_ADMIN_PORT"])
    assert spendgate_services()["admin"]["environment"]["SPENDGATE_ADMIN_PORT"] == str(ports["http"])
    port = free_port()
    process = service_process("admin", tmp_path / "admin", {
        "SPENDGATE_DATABASE_URL": db_url, "SPENDGATE_BUS": "postgres", "SPENDGATE_ADMIN_TOKEN": "t0ken",
        "SPENDGATE_ADMIN_PORT": str(port)})
    await process.start()

    async def accepts() -> bool:
        assert process.running, process.output()
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return True
        except OSError:
            return False

    try:
        await eventually(accepts, timeout_s=60, interval_s=0.1, what="spendgate admin listening")
    finally:
        assert await process.terminate() == 0, process.output()




WORKERS = ("ledger", "alerter", "forecaster", "guard", "reconciler")


def worker_probes() -> Iterator[tuple[str, str, int]]:
    """(service, path, port) of every HTTP probe on a ledger, alerter or forecaster: each on the port its
    ``SPENDGATE_OPS_PORT`` names, in Kubernetes and in compose."""
    for _, container in k8s_containers():
        if container["args"][0] not in WORKERS:
            continue
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        for kind in ("readinessProbe", "livenessProbe"):
            get = container[kind]["httpGet"]
            port = ports.get(get["port"], get["port"])
            assert port == int(k8s_env(container)["SPENDGATE_OPS_PORT"]), container["args"]
            yield container["args"][0], get["path"], port
    for name in WORKERS:
        service = spendgate_services()[name]
        match = re.search(r"http://127\.0\.0\.1:(\d+)(/\S*?)'", " ".join(service["healthcheck"]["test"]))
        assert match, service["healthcheck"]
        assert service["environment"]["SPENDGATE_OPS_PORT"] == match[1]
        yield name, match[2], int(match[1])


async def test_worker_probes_answer_on_a_real_ledger(db_url: str, tmp_path: Path) -> None:
    """The ledger, alerter and forecaster are probed on their ops port; the path answers 200 on a running
    `spendgate ledger` started with the manifests' SPENDGATE_OPS_PORT setting (the three share the code)."""
    probes = list(worker_probes())
    assert {name for name, _, _ in probes} == set(WORKERS)
    port = free_port()
    process = service_process("ledger", tmp_path / "ledger", {
        "SPENDGATE_DATABASE_URL": db_url, "SPENDGATE_BUS": "postgres", "SPENDGATE_OPS_PORT": str(port)})
    await process.start()

    async def answers(path: str) -> bool:
        assert process.running, process.output()
        try:
            async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}{path}") as resp:
                return resp.status == 200
        except aiohttp.ClientConnectionError:
            return False

    try:
        for path in sorted({path for _, path, _ in probes}):
            await eventually(lambda path=path: answers(path), timeout_s=60, interval_s=0.1,  # type: ignore[misc]
                             what=f"spendgate ledger answering {path} on its ops port")
    finally:
        assert await process.terminate() == 0, process.output()

"""What deploy/ ships agrees with the code: the Kubernetes manifests validate (strict, offline,
for a fixed Kubernetes version), the Compose file and the systemd units run real `gateway`
commands with real setting names, ports match, secrets are mounted where the settings read
them, and grace periods cover the drain and a worker's batches. The image itself is built
and run by tests/deploy/test_image.py (`make image-test`)."""

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gateway.cli import build_parser
from gateway.settings import Settings
from gateway.settings_files import FILE_SETTINGS

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
SYSTEMD = DEPLOY / "systemd"
KUBERNETES_VERSION = "1.33.0"
PORT, INTERNAL_PORT, WORKER_METRICS_PORT = 8000, 9100, 9101
# `gateway serve` finishes in-flight requests for up to this long after its drain.
SHUTDOWN_S = 20
# GATEWAY_DRAIN_S's production default, when a manifest leaves it unset.
DEFAULT_DRAIN_S = Settings.model_construct(env="production").effective_drain_s


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def manifests() -> list[dict[str, Any]]:
    return [doc for path in sorted(KUBERNETES.glob("*.yaml")) for doc in documents(path)]


def kind(name: str, component: str | None = None) -> list[dict[str, Any]]:
    def of(doc: dict[str, Any]) -> str:
        return doc["metadata"]["labels"]["app.kubernetes.io/component"]

    return [
        doc
        for doc in manifests()
        if doc["kind"] == name and (component is None or of(doc) == component)
    ]


def deployment(component: str) -> dict[str, Any]:
    (found,) = kind("Deployment", component)
    return found


def container(component: str) -> dict[str, Any]:
    (found,) = deployment(component)["spec"]["template"]["spec"]["containers"]
    return found


def secret_file_variables() -> set[str]:
    """GATEWAY_<NAME>_FILE, read for each setting that may hold a secret."""
    return {f"GATEWAY_{field.upper()}_FILE" for field in FILE_SETTINGS}


def setting_variables() -> set[str]:
    """Every variable the settings read."""
    return {f"GATEWAY_{field.upper()}" for field in Settings.model_fields} | secret_file_variables()


def config_map() -> dict[str, str]:
    (found,) = kind("ConfigMap")
    return found["data"]


def container_env(component: str) -> dict[str, str]:
    return {**config_map(), **{e["name"]: e["value"] for e in container(component)["env"]}}


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def systemd_unit(name: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(_joined_repeats((SYSTEMD / name).read_text()))
    return parser


def _joined_repeats(text: str) -> str:
    """systemd repeats keys (Environment=, LoadCredential=): number them for configparser."""
    seen: dict[str, int] = {}
    lines = []
    for line in text.splitlines():
        match = re.match(r"^(\w+)=(.*)$", line)
        if match:
            key = match.group(1)
            seen[key] = seen.get(key, 0) + 1
            line = f"{key}#{seen[key]}={match.group(2)}"
        elif line.startswith("["):
            seen = {}
        lines.append(line)
    return "\n".join(lines)


def unit_values(unit: configparser.RawConfigParser, section: str, key: str) -> list[str]:
    return [v for k, v in unit.items(section) if k.split("#")[0] == key]


def unit_env(unit: configparser.RawConfigParser) -> dict[str, str]:
    env = dict(
        line.split("=", 1)
        for line in (SYSTEMD / "gateway.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    env |= dict(v.split("=", 1) for v in unit_values(unit, "Service", "Environment"))
    return env


def assert_gateway_command(argv: list[str]) -> None:
    """argv (without the `gateway` program) parses as the CLI's own."""
    build_parser().parse_args(argv)


# --- Kubernetes -----------------------------------------------------------------------


MANIFESTS = sorted(p for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml")


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_kubernetes_manifests_validate_strictly(path: Path) -> None:
    docs = list(documents(path))
    assert docs, f"{path.name} holds no manifest"
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_the_manifests_and_generates_the_mounted_secret() -> None:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {"configmap.yaml", "serve.yaml", "worker.yaml"}
    assert {p.name for p in KUBERNETES.glob("*.yaml")} == listed | {
        "kustomization.yaml",
        "hpa.yaml",  # optional, named in kustomization.yaml's comment
    }
    (generator,) = kustomization["secretGenerator"]
    keys = {Path(f).name for f in generator["files"]}
    for component in ("serve", "worker"):
        spec = deployment(component)["spec"]["template"]["spec"]
        (volume,) = [v for v in spec["volumes"] if "secret" in v]
        assert volume["secret"]["secretName"] == generator["name"]
        (mount,) = [m for m in container(component)["volumeMounts"] if m["name"] == volume["name"]]
        assert mount["readOnly"] is True
        files = {
            name: value
            for name, value in container_env(component).items()
            if name in secret_file_variables()
        }
        assert {str(Path(value).parent) for value in files.values()} == {mount["mountPath"]}
        assert {Path(value).name for value in files.values()} == keys
        # Group-readable only, by the image's user's group.
        assert volume["secret"]["defaultMode"] == 0o440
        assert spec["securityContext"]["fsGroup"] == spec["securityContext"]["runAsUser"] == 10001


def test_kubernetes_settings_are_real_settings() -> None:
    known = setting_variables()
    for component in ("serve", "worker"):
        assert set(container_env(component)) <= known, set(container_env(component)) - known


def test_kubernetes_commands_ports_and_probes_match_the_gateway() -> None:
    serve, worker = container("serve"), container("worker")
    assert "command" not in serve and "command" not in worker  # the image's entrypoint: gateway
    assert_gateway_command(serve["args"])
    assert_gateway_command(worker["args"])
    args = build_parser().parse_args(serve["args"])
    ports = {p["name"]: p["containerPort"] for p in serve["ports"]}
    assert ports == {"http": args.port, "internal": int(config_map()["GATEWAY_INTERNAL_PORT"])}
    assert (args.port, ports["internal"]) == (PORT, INTERNAL_PORT)
    assert serve["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "internal"}
    assert serve["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "internal"}
    (service,) = kind("Service")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"]["selector"] == deployment("serve")["spec"]["selector"]["matchLabels"]

    worker_args = build_parser().parse_args(worker["args"])
    assert worker_args.metrics_port == WORKER_METRICS_PORT == worker["ports"][0]["containerPort"]
    assert worker["livenessProbe"]["exec"]["command"] == ["gateway", "worker", "--check"]
    for component, port in (("serve", INTERNAL_PORT), ("worker", WORKER_METRICS_PORT)):
        annotations = deployment(component)["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(port)
    for budget in kind("PodDisruptionBudget"):
        labels = budget["spec"]["selector"]["matchLabels"]
        assert labels in (
            deployment("serve")["spec"]["selector"]["matchLabels"],
            deployment("worker")["spec"]["selector"]["matchLabels"],
        )


def drain_s(env: dict[str, str]) -> float:
    return float(env.get("GATEWAY_DRAIN_S", DEFAULT_DRAIN_S))


def test_grace_periods_cover_the_drain_and_the_shutdown() -> None:
    serve = deployment("serve")["spec"]["template"]["spec"]
    assert serve["terminationGracePeriodSeconds"] >= drain_s(container_env("serve")) + SHUTDOWN_S
    worker = deployment("worker")["spec"]["template"]["spec"]
    assert worker["terminationGracePeriodSeconds"] >= SHUTDOWN_S + 15  # a batch's claim
    # The readiness probe sees the drain's 503 well within the drain.
    probe = container("serve")["readinessProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] < drain_s(container_env("serve"))


def test_the_optional_autoscaler_targets_the_serve_deployment() -> None:
    (hpa,) = kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment("serve")["metadata"]["name"]


# --- Compose --------------------------------------------------------------------------


def test_compose_runs_postgres_redis_two_replicas_and_two_workers() -> None:
    services = compose()["services"]
    gateway = {"serve-1", "serve-2", "worker-1", "worker-2", "seed"}
    assert set(services) == {"postgres", "redis"} | gateway
    gateways = {name: s for name, s in services.items() if name not in ("postgres", "redis")}
    assert len({s["image"] for s in gateways.values()}) == 1
    for name, service in gateways.items():
        assert_gateway_command(service["command"])
        assert service["command"][0] == name.split("-")[0]  # serve-1 runs serve…
        assert set(service["environment"]) <= setting_variables(), name
        conditions = {dep: c["condition"] for dep, c in service["depends_on"].items()}
        assert conditions == {"postgres": "service_healthy", "redis": "service_healthy"}
    published = set()
    for name in ("serve-1", "serve-2"):
        service = services[name]
        args = build_parser().parse_args(service["command"])
        internal = int(service["environment"]["GATEWAY_INTERNAL_PORT"])
        targets = sorted(int(p.rsplit(":", 1)[1]) for p in service["ports"])
        assert targets == sorted([args.port, internal]) == [PORT, INTERNAL_PORT]
        published |= {p.rsplit(":", 1)[0] for p in service["ports"]}
        assert f"{internal}/healthz" in " ".join(service["healthcheck"]["test"])
        grace = int(service["stop_grace_period"].removesuffix("s"))
        assert grace >= drain_s(service["environment"]) + SHUTDOWN_S
    assert len(published) == 4  # each replica's two ports on their own host ports
    for name in ("worker-1", "worker-2"):
        assert services[name]["healthcheck"]["test"] == ["CMD", "gateway", "worker", "--check"]
    assert services["seed"]["profiles"] == ["demo"]


def test_compose_secrets_are_mounted_where_the_settings_read_them() -> None:
    spec = compose()
    for name, service in spec["services"].items():
        mounted = set(service.get("secrets", []))
        assert mounted <= set(spec["secrets"]), name
        env = service.get("environment", {})
        paths = [v for k, v in env.items() if k in secret_file_variables()]
        assert {p.removeprefix("/run/secrets/") for p in paths} <= mounted, name
        assert all(p.startswith("/run/secrets/") for p in paths)


# --- systemd --------------------------------------------------------------------------


UNITS = ["gateway-serve.service", "gateway-worker@.service", "gateway-worker-check@.service"]


@pytest.mark.parametrize("name", UNITS)
def test_systemd_units_run_gateway_commands_with_real_settings(name: str) -> None:
    unit = systemd_unit(name)
    assert set(unit_env(unit)) <= setting_variables()
    (exec_start,) = unit_values(unit, "Service", "ExecStart")
    argv = exec_start.split()
    if argv[0] == "/bin/sh":  # the check: `gateway worker --check || systemctl restart …`
        argv = exec_start.split("'")[1].split(" >")[0].split()
    assert argv[0] == "/opt/gateway/bin/gateway"
    assert_gateway_command([a.replace("%i", "1") for a in argv[1:]])
    credentials = {v.split(":")[0] for v in unit_values(unit, "Service", "LoadCredential")}
    files = {v for k, v in unit_env(unit).items() if k in secret_file_variables()}
    assert files == {f"%d/{c}" for c in credentials}


def test_systemd_stop_timeouts_cover_the_drain_and_the_shutdown() -> None:
    serve = systemd_unit("gateway-serve.service")
    (timeout,) = unit_values(serve, "Service", "TimeoutStopSec")
    assert int(timeout) >= drain_s(unit_env(serve)) + SHUTDOWN_S
    worker = systemd_unit("gateway-worker@.service")
    (timeout,) = unit_values(worker, "Service", "TimeoutStopSec")
    assert int(timeout) >= SHUTDOWN_S + 15


def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing: bash .ci/install-system test (Debian's systemd)")
    gateway = Path(sys.executable).parent / "gateway"  # the real CLI stands in for /opt/gateway
    for path in SYSTEMD.iterdir():
        text = path.read_text().replace("/opt/gateway/bin/gateway", str(gateway))
        (tmp_path / path.name).write_text(text)
    instances = ["gateway-serve.service", "gateway-worker@1.service"]
    instances += ["gateway-worker-check@1.service", "gateway-worker-check@1.timer"]
    done = subprocess.run(
        [analyze, "verify", *(str(tmp_path / name) for name in instances)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


# --- the image ------------------------------------------------------------------------


def test_containerfile_runs_the_gateway_cli_as_its_own_user() -> None:
    text = (ROOT / "Containerfile").read_text()
    assert re.search(r"^ARG BASE=python:3\.11-slim-bookworm$", text, re.MULTILINE)
    assert 'ENTRYPOINT ["gateway"]' in text
    cmd = re.search(r"^CMD (\[.*\])$", text, re.MULTILINE)
    assert cmd is not None
    args = build_parser().parse_args(yaml.safe_load(cmd.group(1)))
    assert (args.command, args.host, args.port) == ("serve", "0.0.0.0", PORT)
    assert re.search(r"^USER 10001:10001$", text, re.MULTILINE)
    exposed = re.search(r"^EXPOSE (.*)$", text, re.MULTILINE)
    assert exposed is not None
    assert exposed.group(1).split() == [str(PORT), str(INTERNAL_PORT), str(WORKER_METRICS_PORT)]
    # The packages it copies are the ones the distribution holds.
    copied = set(re.findall(r"^COPY (\w+) \1$", text, re.MULTILINE))
    assert copied == {"gateway", "resolvers", "loaders", "workers"}
    for image in (container("serve")["image"], container("worker")["image"]):
        assert image == "director-dashboard-gateway"

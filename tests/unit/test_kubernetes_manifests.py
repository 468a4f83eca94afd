"""deploy/kubernetes/ holds manifests Kubernetes accepts, for a gateway that would start.

No cluster runs here. Every YAML document is validated offline against Kubernetes' own OpenAPI
schemas for a pinned release (kubernetes-validate in strict mode: an unknown field, a misspelt
one, is an error); the two kinds Kubernetes has no schema for, the Prometheus Operator's
ServiceMonitor and kustomize's Kustomization, against small schemas of the fields used
(kubernetes_schemas/). Then what no schema sees: the ConfigMap's TOML loaded by the gateway's own
loader with the environment the pod gets and the files its Secrets mount (a misspelt key, a path
outside the mounts, a Secret key that does not exist: the gateway would refuse to start, and so
does this test), references between the objects, probes and Services on declared ports, labels
and selectors that agree, one replica, a locked-down pod. Each check is also run on a broken copy
of the manifests, to show that it fails.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import secrets
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from sqlalchemy.engine import make_url

from gateway.config import ConfigError, load_config
from gateway.probe import health_address
from tests.certificates import CertificateAuthority
from tests.support import ROOT

MANIFESTS = ROOT / "deploy/kubernetes"
DOCKERFILE = ROOT / "deploy/Dockerfile"
SCHEMAS = Path(__file__).parent / "kubernetes_schemas"
# The newest release whose schemas the dependency's floor (kubernetes-validate 1.31, which
# `make test-lowest-deps` installs) bundles; the manifests use only fields stable since.
KUBERNETES_VERSION = "1.31.0"
# Kinds that no Kubernetes schema covers, with the schema of their own they are held to.
VENDORED_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring-v1.json",
    ("kustomize.config.k8s.io/v1beta1", "Kustomization"): "kustomization-kustomize-v1beta1.json",
}
# Left out of kustomization.yaml on purpose: the Secret templates (applying them would overwrite
# the real Secrets) and the ServiceMonitor (its CRD may be absent); and the list itself.
NOT_IN_KUSTOMIZATION = {"kustomization.yaml", "secrets.template.yaml", "servicemonitor.yaml"}
NAMESPACED = {
    "ConfigMap",
    "Deployment",
    "NetworkPolicy",
    "PodDisruptionBudget",
    "Secret",
    "Service",
    "ServiceAccount",
    "ServiceMonitor",
}
PROBES = ("startupProbe", "livenessProbe", "readinessProbe")

Document = dict[str, Any]
Manifests = dict[tuple[str, str], Document]


def _load() -> Manifests:
    """Every document under deploy/kubernetes/ by (kind, name), with the file it came from."""
    manifests: Manifests = {}
    for path in sorted(MANIFESTS.glob("*.y*ml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document is None:
                continue
            # A Kustomization needs no name: it is its file.
            key = (document["kind"], document.get("metadata", {}).get("name", path.stem))
            assert key not in manifests, f"{path.name}: {key} appears twice"
            manifests[key] = document | {"__file__": path.name}
    return manifests


def _documents() -> list[Document]:
    return list(_load().values())


def _document_id(document: Document) -> str:
    name = document.get("metadata", {}).get("name", "")
    return f"{document['__file__']}:{document['kind']}/{name}".rstrip("/")


def _without_origin(document: Document) -> Document:
    return {k: v for k, v in document.items() if k != "__file__"}


def validate(document: Document) -> None:
    """Raises jsonschema.ValidationError (kubernetes_validate's derives from it) when the document
    does not fit its kind's schema, SchemaNotFoundError for a kind without one."""
    document = _without_origin(document)
    vendored = VENDORED_SCHEMAS.get((document.get("apiVersion"), document.get("kind")))
    if vendored is None:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        return
    schema = json.loads((SCHEMAS / vendored).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(document)


# -- reading the manifests -------------------------------------------------------------------------


def _deployment(m: Manifests) -> Document:
    return m["Deployment", "mam-gateway"]


def _pod(m: Manifests) -> Document:
    return _deployment(m)["spec"]["template"]


def _container(m: Manifests) -> Document:
    containers = _pod(m)["spec"]["containers"]
    assert [c["name"] for c in containers] == ["gateway"]
    return containers[0]


def _container_ports(m: Manifests) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in _container(m)["ports"]}


def _volumes(m: Manifests) -> dict[str, Document]:
    return {v["name"]: v for v in _pod(m)["spec"]["volumes"]}


def _config_path(m: Manifests) -> str:
    """The configuration file the gateway is started with (`--config PATH`)."""
    command = _container(m)["command"]
    assert command[:2] == ["mam-gateway", "--config"] and len(command) == 3, command
    return command[2]


def _mounted_file(m: Manifests, path: str) -> tuple[str, str, str]:
    """(kind, name, key) of the ConfigMap or Secret key the pod sees at `path`."""
    for mount in _container(m)["volumeMounts"]:
        directory = mount["mountPath"].rstrip("/") + "/"
        if not path.startswith(directory):
            continue
        volume = _volumes(m)[mount["name"]]
        for kind, source, name_key in (
            ("ConfigMap", "configMap", "name"),
            ("Secret", "secret", "secretName"),
        ):
            if source in volume:
                keys = _volume_files(m, kind, volume[source], name_key)
                file = path.removeprefix(directory)
                assert file in keys, f"{path}: no such key in {kind} {volume[source][name_key]}"
                return kind, volume[source][name_key], keys[file]
    raise AssertionError(f"{path}: not in a ConfigMap or Secret the pod mounts")


def _volume_files(m: Manifests, kind: str, source: Document, name_key: str) -> dict[str, str]:
    """A ConfigMap or Secret volume's files: {file name: key}."""
    data = _data(m, kind, source[name_key])
    if "items" not in source:
        return {key: key for key in data}
    return {item["path"]: item["key"] for item in source["items"]}


def _data(m: Manifests, kind: str, name: str) -> dict[str, str]:
    assert (kind, name) in m, f"no {kind} {name} in deploy/kubernetes/"
    document = m[kind, name]
    return {**document.get("data", {}), **document.get("stringData", {})}


def _toml(m: Manifests) -> dict[str, Any]:
    kind, name, key = _mounted_file(m, _config_path(m))
    return tomllib.loads(_data(m, kind, name)[key])


def _port(listen: str) -> int:
    return int(listen.rsplit(":", 1)[1])


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and selector.items() <= labels.items()


def _image_environment() -> dict[str, str]:
    """The MAM__ variables deploy/Dockerfile sets (ENV), which a pod of the image gets too."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.startswith("#")]
    return dict(re.findall(r"(MAM__\w+)=([^\s\\]+)", "\n".join(lines)))


# -- the pod's view: its configuration file, environment and mounted files -------------------------


@dataclasses.dataclass(frozen=True)
class PodView:
    config: Path
    environ: dict[str, str]


def _test_secret_values(tmp_path: Path) -> dict[tuple[str, str], str]:
    """What a filled-in Secret would hold, for each key the templates leave as a placeholder."""
    authority = CertificateAuthority.create(tmp_path / "ca")
    cert, key = authority.issue("mam-gateway.mam.svc")
    return {
        ("mam-gateway-database", "password"): "p@ss#1/x\n",
        ("mam-gateway-tls", "tls.crt"): cert.read_text(),
        ("mam-gateway-tls", "tls.key"): key.read_text(),
        ("mam-gateway-tokens", "worker-tokens"): f"win-01:{secrets.token_urlsafe(32)} 7001\n",
        ("mam-gateway-tokens", "mt4-tokens"): f"5001 {secrets.token_urlsafe(32)}\n",
    }


def pod_view(m: Manifests, root: Path, secret_values: dict[tuple[str, str], str]) -> PodView:
    """The pod's files laid out under `root` (each mount at root + its mountPath, each file its
    ConfigMap's or Secret's key, `secret_values` standing in for placeholders) and its
    environment (the image's, then the container's); paths in the configuration and the
    environment that fall inside a mount are moved under `root` with it, other paths are not
    (so the loader finds no such file there)."""
    container = _container(m)
    mounts = sorted((mount["mountPath"] for mount in container["volumeMounts"]), key=len)
    # One pass, the longest mount path first: a path is moved once (root may be under /tmp).
    mount_path = re.compile(
        rf"(?<![\w/])({'|'.join(re.escape(path) for path in reversed(mounts))})(?=/|\"|$)", re.M
    )

    def in_root(text: str) -> str:
        return mount_path.sub(lambda match: f"{root}{match[1]}", text)

    def value(kind: str, name: str, key: str) -> str:
        data = _data(m, kind, name)
        assert key in data, f"no key {key} in {kind} {name}"
        if kind == "Secret" and (name, key) in secret_values:
            return secret_values[name, key]
        return in_root(data[key])

    for mount in container["volumeMounts"]:
        directory = root / mount["mountPath"].lstrip("/")
        directory.mkdir(parents=True, exist_ok=True)
        volume = _volumes(m)[mount["name"]]
        for kind, source, name_key in (
            ("ConfigMap", "configMap", "name"),
            ("Secret", "secret", "secretName"),
        ):
            if source in volume:
                name = volume[source][name_key]
                for file, key in _volume_files(m, kind, volume[source], name_key).items():
                    (directory / file).write_text(value(kind, name, key))

    environ = {name: in_root(text) for name, text in _image_environment().items()}
    for variable in container.get("env", []):
        if "value" in variable:
            environ[variable["name"]] = in_root(variable["value"])
            continue
        reference = variable["valueFrom"]
        if "secretKeyRef" in reference:
            ref = reference["secretKeyRef"]
            environ[variable["name"]] = value("Secret", ref["name"], ref["key"])
        else:
            ref = reference["configMapKeyRef"]
            environ[variable["name"]] = value("ConfigMap", ref["name"], ref["key"])
    config = root / _config_path(m).lstrip("/")
    return PodView(config, environ)


# -- checks that report problems, run on the manifests and on broken copies ------------------------


def reference_problems(m: Manifests) -> list[str]:
    """Every ConfigMap, Secret and key the Deployment names exists; kustomization.yaml lists
    every manifest but the templates and the ServiceMonitor."""
    problems = []
    pod = _pod(m)["spec"]
    for volume in pod["volumes"]:
        for kind, source, name_key in (
            ("ConfigMap", "configMap", "name"),
            ("Secret", "secret", "secretName"),
        ):
            if source not in volume:
                continue
            name = volume[source][name_key]
            if (kind, name) not in m:
                problems.append(f"volume {volume['name']}: no {kind} {name}")
                continue
            for item in volume[source].get("items", []):
                if item["key"] not in _data(m, kind, name):
                    problems.append(f"volume {volume['name']}: no key {item['key']} in {name}")
    for variable in _container(m).get("env", []):
        for kind, ref_key in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
            ref = variable.get("valueFrom", {}).get(ref_key)
            if ref is None:
                continue
            if (kind, ref["name"]) not in m or ref["key"] not in _data(m, kind, ref["name"]):
                problems.append(f"env {variable['name']}: no key {ref['key']} in {ref['name']}")
    if ("ServiceAccount", pod["serviceAccountName"]) not in m:
        problems.append(f"no ServiceAccount {pod['serviceAccountName']}")
    kustomization = m["Kustomization", "kustomization"]
    files = {path.name for path in MANIFESTS.glob("*.y*ml")}
    if set(kustomization["resources"]) != files - NOT_IN_KUSTOMIZATION:
        problems.append(f"kustomization.yaml resources: {kustomization['resources']}")
    return problems


def selector_problems(m: Manifests) -> list[str]:
    """The Deployment, Service, PodDisruptionBudget and NetworkPolicy select the gateway's pods,
    the ServiceMonitor its Service; all in one namespace."""
    problems = []
    pod_labels = _pod(m)["metadata"]["labels"]
    service = m["Service", "mam-gateway"]
    selectors = {
        "Deployment": _deployment(m)["spec"]["selector"].get("matchLabels", {}),
        "Service": service["spec"].get("selector", {}),
        "PodDisruptionBudget": m["PodDisruptionBudget", "mam-gateway"]["spec"]["selector"].get(
            "matchLabels", {}
        ),
        "NetworkPolicy": m["NetworkPolicy", "mam-gateway"]["spec"]["podSelector"].get(
            "matchLabels", {}
        ),
    }
    for kind, selector in selectors.items():
        if not _matches(selector, pod_labels):
            problems.append(f"{kind} selects {selector}, not the gateway's pods {pod_labels}")
    monitor = m["ServiceMonitor", "mam-gateway"]["spec"]
    if not _matches(monitor["selector"]["matchLabels"], service["metadata"]["labels"]):
        problems.append("ServiceMonitor does not select the Service")
    if service["metadata"]["namespace"] not in monitor["namespaceSelector"]["matchNames"]:
        problems.append("ServiceMonitor looks in another namespace")
    service_ports = {port["name"] for port in service["spec"]["ports"]}
    for endpoint in monitor["endpoints"]:
        if endpoint["port"] not in service_ports:
            problems.append(f"ServiceMonitor scrapes port {endpoint['port']}, not the Service's")
    namespaces = [name for kind, name in m if kind == "Namespace"]
    kustomization = [d for d in m.values() if d["kind"] == "Kustomization"]
    expected = {*namespaces, *(d["namespace"] for d in kustomization)}
    if len(expected) != 1:
        problems.append(f"namespaces: {sorted(expected)}")
    for (kind, name), document in m.items():
        if kind in NAMESPACED and document["metadata"].get("namespace") not in expected:
            problems.append(f"{kind} {name}: namespace {document['metadata'].get('namespace')}")
    return problems


def port_problems(m: Manifests) -> list[str]:
    """Probes, the Service, the NetworkPolicy and the scrape annotations name declared container
    ports; the configuration listens on them; the readiness probe asks the gateway's health."""
    problems = []
    ports = _container_ports(m)

    def declared(port: int | str, where: str) -> None:
        if port not in ports and port not in ports.values():
            problems.append(f"{where}: port {port} is not a container port {ports}")

    container = _container(m)
    for probe_name in PROBES:
        probe = container.get(probe_name)
        if probe is None:
            problems.append(f"no {probe_name}")
            continue
        for action in ("tcpSocket", "grpc", "httpGet"):
            if action in probe:
                declared(probe[action]["port"], probe_name)
        if "exec" in probe and probe["exec"]["command"] != [
            "mam-probe",
            "--config",
            _config_path(m),
        ]:
            problems.append(
                f"{probe_name}: {probe['exec']['command']}: not mam-probe on the config"
            )
    if "exec" not in container.get("readinessProbe", {}):
        problems.append("readinessProbe: not the gRPC health status (mam-probe)")
    for port in m["Service", "mam-gateway"]["spec"]["ports"]:
        declared(port["targetPort"], f"Service port {port['name']}")
        if ports.get(port["targetPort"]) != port["port"]:
            problems.append(f"Service port {port['name']}: {port['port']} is not the pod's")
    for rule in m["NetworkPolicy", "mam-gateway"]["spec"]["ingress"]:
        for port in rule["ports"]:
            declared(port["port"], "NetworkPolicy ingress")
    annotations = _pod(m)["metadata"]["annotations"]
    if int(annotations["prometheus.io/port"]) != ports.get("metrics"):
        problems.append(f"prometheus.io/port {annotations['prometheus.io/port']} is not metrics")
    config = _toml(m)
    listens = {
        "grpc": config["server"]["listen"],
        "mt4-bridge": config.get("mt4_bridge", {}).get("listen", ""),
        "metrics": config.get("metrics", {}).get("listen", ""),
    }
    for name, listen in listens.items():
        if name in ports and (not listen or _port(listen) != ports[name]):
            problems.append(f"container port {name} {ports[name]}: the gateway listens on {listen}")
    if not config["server"].get("health_listen"):
        problems.append("server.health_listen: the readiness probe needs it")
    return problems


def lifecycle_problems(m: Manifests) -> list[str]:
    """One gateway per database: one replica, replaced by stopping it first, given the time its
    stop takes, not evicted while it serves."""
    problems = []
    spec = _deployment(m)["spec"]
    if spec["replicas"] != 1:
        problems.append(f"replicas: {spec['replicas']}: one gateway may write a database")
    if spec["strategy"] != {"type": "Recreate"}:
        problems.append(f"strategy: {spec['strategy']}: the old pod must stop before the new one")
    # Running calls, then in-flight dispatches, then the recorder: grace_seconds each.
    grace = _toml(m)["server"].get("grace_seconds", 5)
    termination = _pod(m)["spec"]["terminationGracePeriodSeconds"]
    if termination < 3 * grace + 10:
        problems.append(f"terminationGracePeriodSeconds {termination} < 3 x {grace} s + 10 s")
    budget = m["PodDisruptionBudget", "mam-gateway"]["spec"]
    if budget.get("maxUnavailable") != 0 or budget.get("unhealthyPodEvictionPolicy") != (
        "AlwaysAllow"
    ):
        problems.append(f"PodDisruptionBudget: {budget}")
    return problems


def lockdown_problems(m: Manifests) -> list[str]:
    """Non-root as the image's user, no privilege, a read-only root with emptyDirs where it
    writes, Secrets readable by the pod's group only, no API token, bounded resources."""
    problems = []
    user = re.findall(r"^USER (\d+):(\d+)$", DOCKERFILE.read_text(), re.M)
    pod = _pod(m)["spec"]
    expected_pod = {
        "runAsNonRoot": True,
        "runAsUser": int(user[0][0]),
        "runAsGroup": int(user[0][1]),
        "fsGroup": int(user[0][1]),
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if pod["securityContext"] != expected_pod:
        problems.append(f"pod securityContext: {pod['securityContext']}")
    if pod.get("automountServiceAccountToken") is not False:
        problems.append("the pod mounts a service account token")
    container = _container(m)
    expected_container = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    if container["securityContext"] != expected_container:
        problems.append(f"container securityContext: {container['securityContext']}")
    volumes = _volumes(m)
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        if not mount.get("readOnly") and "emptyDir" not in volume:
            problems.append(f"{mount['mountPath']}: writable, and not an emptyDir")
        if "secret" in volume and volume["secret"].get("defaultMode", 0o644) & 0o007:
            problems.append(f"{mount['mountPath']}: a Secret readable by every user")
    resources = container.get("resources", {})
    for bound in ("requests", "limits"):
        if set(resources.get(bound, {})) != {"cpu", "memory"}:
            problems.append(f"resources.{bound}: {resources.get(bound)}")
    if container["image"].endswith(":latest") or ":" not in container["image"].split("/")[-1]:
        problems.append(f"image {container['image']}: no version")
    return problems


def network_problems(m: Manifests) -> list[str]:
    """Ingress and egress both restricted; egress to DNS and to the database URL's port; metrics
    from the monitoring namespace only."""
    problems = []
    policy = m["NetworkPolicy", "mam-gateway"]["spec"]
    if sorted(policy["policyTypes"]) != ["Egress", "Ingress"]:
        problems.append(f"policyTypes: {policy['policyTypes']}")
    egress = {(p["port"], p.get("protocol", "TCP")) for r in policy["egress"] for p in r["ports"]}
    url = make_url(_data(m, "Secret", "mam-gateway-database")["url"])
    for needed in ((53, "UDP"), (53, "TCP"), (url.port or 5432, "TCP")):
        if needed not in egress:
            problems.append(f"no egress to port {needed[0]}/{needed[1]}")
    for rule in policy["ingress"]:
        if {p["port"] for p in rule["ports"]} & {"metrics", _container_ports(m)["metrics"]}:
            peers = rule["from"]
            if not peers or any("namespaceSelector" not in peer for peer in peers):
                problems.append(f"metrics open to {peers}")
    return problems


CHECKS: list[Callable[[Manifests], list[str]]] = [
    reference_problems,
    selector_problems,
    port_problems,
    lifecycle_problems,
    lockdown_problems,
    network_problems,
]


# -- the tests -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "document",
    _documents(),
    ids=_document_id,
)
def test_each_manifest_fits_its_schema(document: Document) -> None:
    validate(document)


def test_the_manifests_are_all_there() -> None:
    kinds = sorted(kind for kind, _ in _load())
    assert kinds == sorted(
        [
            "ConfigMap",
            "Deployment",
            "Kustomization",
            "Namespace",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Secret",
            "Secret",
            "Secret",
            "Service",
            "ServiceAccount",
            "ServiceMonitor",
        ]
    )


DELETE = object()
POD = ("spec", "template", "spec")
CONTAINER = (*POD, "containers", 0)


def _set(kind: str, name: str, *keys: str | int, value: object) -> Callable[[Manifests], None]:
    """A mutation of the manifests: the value at `keys` of the document (kind, name) set to
    `value` (or deleted: DELETE)."""

    def mutate(m: Manifests) -> None:
        target: Any = m[kind, name]
        for key in keys[:-1]:
            target = target[key]
        if value is DELETE:
            del target[keys[-1]]
        else:
            target[keys[-1]] = value

    return mutate


def _deployment_set(*keys: str | int, value: object) -> Callable[[Manifests], None]:
    return _set("Deployment", "mam-gateway", *keys, value=value)


@pytest.mark.parametrize(
    ("kind", "name", "mutation"),
    [
        # A misspelt field: strict validation refuses what the API server would silently drop.
        pytest.param(
            "Deployment",
            "mam-gateway",
            _deployment_set("spec", "replica", value=1),
            id="Deployment spec.replica",
        ),
        pytest.param(
            "Deployment",
            "mam-gateway",
            _deployment_set(*CONTAINER, "ports", 0, "containerPort", value="50051"),
            id="Deployment containerPort as a string",
        ),
        pytest.param(
            "Deployment",
            "mam-gateway",
            _deployment_set(*CONTAINER, "livenessProbe", "tcpSockets", value={}),
            id="Deployment livenessProbe.tcpSockets",
        ),
        pytest.param(
            "Service",
            "mam-gateway",
            _set("Service", "mam-gateway", "spec", "ports", 0, "port", value="grpc"),
            id="Service port by name",
        ),
        pytest.param(
            "NetworkPolicy",
            "mam-gateway",
            _set("NetworkPolicy", "mam-gateway", "spec", "ingress", 0, "form", value=[]),
            id="NetworkPolicy ingress.form",
        ),
        pytest.param(
            "PodDisruptionBudget",
            "mam-gateway",
            _set("PodDisruptionBudget", "mam-gateway", "spec", "minAvailabel", value=1),
            id="PodDisruptionBudget minAvailabel",
        ),
        pytest.param(
            "ServiceMonitor",
            "mam-gateway",
            _set("ServiceMonitor", "mam-gateway", "spec", "endpoints", 0, "intervall", value="5s"),
            id="ServiceMonitor intervall",
        ),
        pytest.param(
            "ServiceMonitor",
            "mam-gateway",
            _set("ServiceMonitor", "mam-gateway", "spec", "endpoints", 0, "interval", value="5 s"),
            id="ServiceMonitor interval not a duration",
        ),
        pytest.param(
            "Kustomization",
            "kustomization",
            _set("Kustomization", "kustomization", "resource", value=[]),
            id="Kustomization resource",
        ),
    ],
)
def test_a_broken_manifest_does_not_fit_its_schema(
    kind: str, name: str, mutation: Callable[[Manifests], None]
) -> None:
    manifests = copy.deepcopy(_load())
    validate(manifests[kind, name])
    mutation(manifests)
    with pytest.raises(jsonschema.ValidationError):
        validate(manifests[kind, name])


def test_a_kind_without_a_schema_is_an_error() -> None:
    unknown = {"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "x"}}
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        validate(unknown)


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
def test_the_manifests_pass_the_project_checks(check: Callable[[Manifests], list[str]]) -> None:
    assert check(_load()) == []


NETWORK_POLICY = ("NetworkPolicy", "mam-gateway")


@pytest.mark.parametrize(
    ("check", "mutation"),
    [
        pytest.param(
            reference_problems,
            _deployment_set(*POD, "volumes", 2, "secret", "items", 0, "key", value="passwd"),
            id="a Secret key that does not exist",
        ),
        pytest.param(
            reference_problems,
            _deployment_set(*CONTAINER, "env", 0, "valueFrom", "secretKeyRef", "name", value="x"),
            id="a Secret that does not exist",
        ),
        pytest.param(
            reference_problems,
            _set("Kustomization", "kustomization", "resources", 6, value="servicemonitor.yaml"),
            id="kustomization.yaml missing a manifest",
        ),
        pytest.param(
            selector_problems,
            _set("Service", "mam-gateway", "spec", "selector", value={"app": "mam-gateway"}),
            id="the Service selects other pods",
        ),
        pytest.param(
            selector_problems,
            _set("PodDisruptionBudget", "mam-gateway", "spec", "selector", value={}),
            id="the PodDisruptionBudget selects nothing",
        ),
        pytest.param(
            selector_problems,
            _set("ServiceMonitor", "mam-gateway", "spec", "endpoints", 0, "port", value="http"),
            id="the ServiceMonitor scrapes a port the Service lacks",
        ),
        pytest.param(
            selector_problems,
            _set("ConfigMap", "mam-gateway-config", "metadata", "namespace", value="default"),
            id="an object in another namespace",
        ),
        pytest.param(
            port_problems,
            _deployment_set(*CONTAINER, "livenessProbe", "tcpSocket", "port", value="grpcs"),
            id="a probe on an undeclared port",
        ),
        pytest.param(
            port_problems,
            _deployment_set(*CONTAINER, "ports", 0, "containerPort", value=50053),
            id="the gateway listens on another port",
        ),
        pytest.param(
            port_problems,
            _deployment_set(*CONTAINER, "readinessProbe", "exec", "command", 2, value="/x.toml"),
            id="mam-probe reads another configuration",
        ),
        pytest.param(
            port_problems,
            _deployment_set(
                "spec", "template", "metadata", "annotations", "prometheus.io/port", value="9100"
            ),
            id="the scrape annotation names another port",
        ),
        pytest.param(
            lifecycle_problems,
            _deployment_set("spec", "replicas", value=2),
            id="two replicas",
        ),
        pytest.param(
            lifecycle_problems,
            _deployment_set("spec", "strategy", value={"type": "RollingUpdate"}),
            id="a rolling update",
        ),
        pytest.param(
            lifecycle_problems,
            _deployment_set(*POD, "terminationGracePeriodSeconds", value=30),
            id="too little time to stop",
        ),
        pytest.param(
            lockdown_problems,
            _deployment_set(*CONTAINER, "securityContext", "readOnlyRootFilesystem", value=False),
            id="a writable root",
        ),
        pytest.param(
            lockdown_problems,
            _deployment_set(*POD, "securityContext", "runAsUser", value=0),
            id="root",
        ),
        pytest.param(
            lockdown_problems,
            _deployment_set(*POD, "volumes", 1, "secret", "defaultMode", value=0o644),
            id="a world-readable Secret",
        ),
        pytest.param(
            lockdown_problems,
            _deployment_set(*CONTAINER, "resources", "limits", value=DELETE),
            id="no limits",
        ),
        pytest.param(
            network_problems,
            _set(*NETWORK_POLICY, "spec", "egress", 1, "ports", 0, "port", value=5433),
            id="no egress to the database's port",
        ),
        pytest.param(
            network_problems,
            _set(*NETWORK_POLICY, "spec", "ingress", 2, "from", value=[]),
            id="metrics open to everybody",
        ),
    ],
)
def test_a_broken_copy_fails_the_project_checks(
    check: Callable[[Manifests], list[str]], mutation: Callable[[Manifests], None]
) -> None:
    manifests = copy.deepcopy(_load())
    mutation(manifests)
    assert check(manifests) != []


def test_the_gateway_accepts_its_configuration_as_the_pod_sees_it(tmp_path: Path) -> None:
    manifests = _load()
    pod = pod_view(manifests, tmp_path / "pod", _test_secret_values(tmp_path))
    config = load_config(pod.config, environ=pod.environ)
    ports = _container_ports(manifests)
    url = make_url(config.database_url)
    # The URL from the Secret, the password from its file put in by the gateway.
    assert (url.drivername, url.username, url.password, url.host, url.port, url.database) == (
        "postgresql+asyncpg",
        "mam",
        "p@ss#1/x",
        "postgres.database.svc.cluster.local",
        5432,
        "mam",
    )
    assert config.server.host == "0.0.0.0" and _port(config.server.listen) == ports["grpc"]
    assert config.server.tls is not None and not config.server.plaintext_off_loopback
    assert config.server.health_listen.startswith("127.0.0.1:")
    # The readiness probe (mam-probe, reading that one key) asks where the gateway answers.
    assert health_address(pod.config, pod.environ) == config.server.health_listen
    assert config.auth.required and config.auth.bootstrap_admin_key_file is None
    assert _port(config.mt4_bridge.listen) == ports["mt4-bridge"]
    assert config.workers.enabled and [t.worker_id for t in config.workers.tokens] == ["win-01"]
    # Served on the pod's address, for the monitoring namespace's Prometheus.
    assert config.metrics.enabled and config.metrics.plaintext_off_loopback
    assert _port(config.metrics.listen) == ports["metrics"]
    assert config.demo is None


@pytest.mark.parametrize(
    ("mutation", "message"),
    [
        # A misspelt key is refused by the loader, as the gateway would refuse to start.
        (
            lambda m: _replace_in_config(m, "grace_seconds = ", "grace_second = "),
            r"server\.grace_second",
        ),
        # A file outside the mounts does not exist in the pod.
        (
            lambda m: _replace_in_config(m, "/etc/mam-gateway/tls/tls.crt", "/etc/tls/tls.crt"),
            r"server\.tls_cert_file: no such file",
        ),
        # Metrics off loopback without saying so.
        (
            lambda m: _replace_in_config(
                m,
                'listen = "0.0.0.0:9464"\nplaintext_off_loopback = true',
                'listen = "0.0.0.0:9464"\nplaintext_off_loopback = false',
            ),
            r"metrics\.listen: 0\.0\.0\.0 is not a loopback address",
        ),
        # Without the URL from the Secret, the image's SQLite URL does not take a password file.
        (
            _deployment_set(*CONTAINER, "env", value=[]),
            r"database\.password_file: only for a postgresql",
        ),
    ],
)
def test_a_broken_configuration_is_refused_as_the_gateway_would(
    tmp_path: Path, mutation: Callable[[Manifests], None], message: str
) -> None:
    manifests = copy.deepcopy(_load())
    mutation(manifests)
    pod = pod_view(manifests, tmp_path / "pod", _test_secret_values(tmp_path))
    with pytest.raises(ConfigError, match=message):
        load_config(pod.config, environ=pod.environ)


def test_a_file_the_configuration_names_must_be_a_key_of_its_secret(tmp_path: Path) -> None:
    manifests = copy.deepcopy(_load())
    _replace_in_config(manifests, "tokens/worker-tokens", "tokens/workers")
    with pytest.raises(AssertionError, match=r"tokens/workers: no such key in Secret"):
        _mounted_file(manifests, "/etc/mam-gateway/tokens/workers")
    pod = pod_view(manifests, tmp_path / "pod", _test_secret_values(tmp_path))
    with pytest.raises(ConfigError, match=r"workers\.tokens_file: cannot read"):
        load_config(pod.config, environ=pod.environ)


def _replace_in_config(m: Manifests, old: str, new: str) -> None:
    data = m["ConfigMap", "mam-gateway-config"]["data"]
    assert old in data["gateway.toml"]
    data["gateway.toml"] = data["gateway.toml"].replace(old, new)


def test_the_secret_templates_hold_placeholders_only() -> None:
    templates = [d for d in _load().values() if d["kind"] == "Secret"]
    assert {d["__file__"] for d in templates} == {"secrets.template.yaml"}
    for secret in templates:
        # Plain text, so that a review sees every value: no base64 `data`.
        assert "data" not in secret, secret["metadata"]["name"]
        for key, value in secret["stringData"].items():
            if key == "url":
                assert make_url(value).password is None  # the password is a file of its own
                continue
            assert "REPLACE-ME" in value, key
            if "\n" in value.strip():
                # A token file: comments only, no entry that would be a token.
                lines = [line.strip() for line in value.splitlines() if line.strip()]
                assert all(line.startswith("#") for line in lines), key


def test_the_templates_alone_start_no_gateway(tmp_path: Path) -> None:
    pod = pod_view(_load(), tmp_path / "pod", {})
    with pytest.raises(ConfigError):
        load_config(pod.config, environ=pod.environ)

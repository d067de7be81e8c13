"""Security and availability posture, read from the manifests: what a reviewer would check by hand."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
import yaml

from switchboard.controller.policy import load_policy
from switchboard.ingress.app import WEBHOOK_PATH, Ingress
from switchboard.shared.config import Secret, Settings
from tests.deploy.manifests import (
    BASE,
    CONSOLE_PROXY,
    SERVICES,
    SINGLETONS,
    TARGETS,
    Doc,
    Manifests,
    kustomization,
    manifests,
    pod_specs,
)

# Services that serve no HTTP endpoint, so have nothing real to probe (none today: every service serves
# /healthz and /readyz). One added here must have no probes: the test below insists.
WITHOUT_HEALTH_ENDPOINT: set[str] = set()
# The only services that call out of the cluster (OpenAI's API, over HTTPS).
REACH_OPENAI = {"controller", "session"}


def _ingress_get_routes() -> set[str]:
    settings = Settings(webhook_secrets=(Secret("whsec_" + "A" * 32),))
    app = Ingress(settings).app()
    return {route.resource.canonical for route in app.router.routes() if route.method == "GET" and route.resource}


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if not selector:
        return True
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        present = expr["key"] in labels
        value = labels.get(expr["key"])
        if expr["operator"] == "In" and value not in expr["values"]:
            return False
        if expr["operator"] == "NotIn" and value in expr["values"]:
            return False
        if expr["operator"] == "Exists" and not present:
            return False
    return True


def _pod_labels(m: Manifests, service: str) -> dict[str, str]:
    labels: dict[str, str] = m.deployment(service)["spec"]["template"]["metadata"]["labels"]
    return labels


@pytest.mark.parametrize("target", TARGETS)
def test_pods_run_as_non_root_without_privileges(target: str) -> None:
    """Pods: non-root, seccomp RuntimeDefault, no API token; containers: read-only root, no escalation, no caps."""
    m = manifests(target)
    for name, spec in pod_specs(m):
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] > 0, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), name
        for container in spec["containers"] + spec.get("initContainers", []):
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc.get("privileged", False) is False, name
            assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add"), name


@pytest.mark.parametrize("target", TARGETS)
def test_the_namespace_enforces_the_restricted_pod_security_standard(target: str) -> None:
    """The namespace carries Pod Security Admission's `restricted` enforcement."""
    (namespace,) = manifests(target).of_kind("Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("target", TARGETS)
def test_every_container_has_requests_and_limits(target: str) -> None:
    """Each container requests and is limited in both CPU and memory, and requests no more than its limit."""
    m = manifests(target)
    for name, spec in pod_specs(m):
        for container in spec["containers"]:
            resources = container["resources"]
            assert set(resources["requests"]) == {"cpu", "memory"}, name
            assert set(resources["limits"]) == {"cpu", "memory"}, name


@pytest.mark.parametrize("target", TARGETS)
def test_images_are_pinned_to_a_version(target: str) -> None:
    """Rendered images carry an explicit tag (never `latest`) through the kustomize `images` entry."""
    m = manifests(target)
    for name, spec in pod_specs(m):
        for container in spec["containers"]:
            image = container["image"]
            if m.rendered:
                assert ":" in image and not image.endswith(":latest"), f"{name}: {image}"
            else:
                pinned = {i["name"] for i in kustomization(BASE)["images"] if i.get("newTag")}
                assert image in pinned, f"{name}: the base names the image; kustomize pins it"


@pytest.mark.parametrize("target", TARGETS)
def test_every_service_runs_its_own_image(target: str) -> None:
    """Each Deployment runs its service's own image, as the image's entrypoint runs it (no command, no args)."""
    m = manifests(target)
    for service in SERVICES:
        container = m.container(service)
        assert container["image"].partition(":")[0].rpartition("/")[2] == f"switchboard-{service}"
        assert "args" not in container and "command" not in container


@pytest.mark.parametrize("target", TARGETS)
def test_ingress_probes_hit_its_real_endpoints(target: str) -> None:
    """The ingress's startup, liveness and readiness probes use /healthz and /readyz, routes its app serves."""
    m = manifests(target)
    container = m.container("ingress")
    routes = _ingress_get_routes()
    port = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert str(port["http"]) == m.env("ingress")["INGRESS_PORT"]["value"]
    paths = {}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert get["port"] == "http" and get["path"] in routes, probe
        paths[probe] = get["path"]
    assert paths["readinessProbe"] == "/readyz" and paths["livenessProbe"] == "/healthz"


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("service", ["controller", "session", "projector"])
def test_worker_probes_hit_the_health_server_on_health_port(target: str, service: str) -> None:
    """Controller, session and projector probes use the health server's /healthz and /readyz on HEALTH_PORT."""
    m = manifests(target)
    container = m.container(service)
    port = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert str(port["health"]) == m.env(service)["HEALTH_PORT"]["value"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}


@pytest.mark.parametrize("target", TARGETS)
def test_services_without_probes_are_exactly_those_without_a_health_endpoint(target: str) -> None:
    """Every service with a health endpoint has all three probes; the known exceptions have none."""
    m = manifests(target)
    probes = ("startupProbe", "livenessProbe", "readinessProbe")
    for service in SERVICES:
        container = m.container(service)
        if service in WITHOUT_HEALTH_ENDPOINT:
            assert not any(p in container for p in probes), f"{service} has probes now: update the list"
            assert "ports" not in container
            assert "HEALTH_PORT" not in m.env(service), f"{service}: no health server reads HEALTH_PORT"
        else:
            assert all(p in container for p in probes), service


@pytest.mark.parametrize("target", TARGETS)
def test_every_deployment_has_a_disruption_budget(target: str) -> None:
    """Each Deployment's pods are covered by exactly one PodDisruptionBudget that lets evictions proceed."""
    m = manifests(target)
    budgets = m.of_kind("PodDisruptionBudget")
    for service in SERVICES:
        covering = [b for b in budgets if _selects(b["spec"]["selector"], _pod_labels(m, service))]
        assert len(covering) == 1, service
        assert covering[0]["spec"].get("maxUnavailable") == 1, service


@pytest.mark.parametrize("target", TARGETS)
def test_every_deployment_spreads_across_nodes_and_zones(target: str) -> None:
    """Each Deployment spreads its own pods over hostnames and zones."""
    m = manifests(target)
    for service in SERVICES:
        spec = m.deployment(service)["spec"]["template"]["spec"]
        keys = set()
        for constraint in spec["topologySpreadConstraints"]:
            assert _selects(constraint["labelSelector"], _pod_labels(m, service)), service
            keys.add(constraint["topologyKey"])
        assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}, service


@pytest.mark.parametrize("target", TARGETS)
def test_rollouts_never_take_a_pod_away_before_its_replacement_is_ready(target: str) -> None:
    """Rolling updates surge first (maxUnavailable 0), so capacity never dips during a rollout."""
    m = manifests(target)
    for service in SERVICES:
        if service in SINGLETONS:
            continue
        strategy = m.deployment(service)["spec"]["strategy"]
        assert strategy["type"] == "RollingUpdate" and strategy["rollingUpdate"]["maxUnavailable"] == 0, service


@pytest.mark.parametrize("target", TARGETS)
def test_singletons_run_exactly_one_pod_and_never_two(target: str) -> None:
    """The projector applies events in order: one replica in every environment (no overlay scales it, no
    autoscaler targets it), and a rollout stops the old pod before it starts the new one (Recreate)."""
    m = manifests(target)
    for service in SINGLETONS:
        deployment = m.deployment(service)
        assert deployment["spec"]["replicas"] == 1, service
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}, service
        name = deployment["metadata"]["name"]
        for scaled in m.of_kind("ScaledObject") + m.of_kind("HorizontalPodAutoscaler"):
            assert scaled["spec"]["scaleTargetRef"]["name"] != name, f"{service} must not be autoscaled"


@pytest.mark.parametrize("target", TARGETS)
def test_session_grace_period_covers_the_drain(target: str) -> None:
    """A session pod's termination grace covers its preStop, the drain and the hand-over of the calls left."""
    m = manifests(target)
    spec = m.deployment("session")["spec"]["template"]["spec"]
    container = m.container("session")
    pre_stop_s = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain_s = float(m.env("session")["SESSION_DRAIN_GRACE_S"]["value"])
    hand_over_s = 10  # releasing the remaining calls and closing the connection
    assert spec["terminationGracePeriodSeconds"] >= pre_stop_s + drain_s + hand_over_s


@pytest.mark.parametrize("target", TARGETS)
def test_network_policies_deny_by_default(target: str) -> None:
    """A namespace-wide policy denies all traffic in and out unless another policy allows it."""
    m = manifests(target)
    deny = [
        p
        for p in m.of_kind("NetworkPolicy")
        if p["spec"]["podSelector"] == {} and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    ]
    assert len(deny) == 1 and "ingress" not in deny[0]["spec"] and "egress" not in deny[0]["spec"]


def _allowed(m: Manifests, service: str, direction: str) -> list[Doc]:
    rules = []
    for policy in m.of_kind("NetworkPolicy"):
        if _selects(policy["spec"]["podSelector"], _pod_labels(m, service)):
            rules.extend(policy["spec"].get(direction, []))
    return rules


@pytest.mark.parametrize("target", TARGETS)
def test_only_the_ingress_pods_accept_traffic(target: str) -> None:
    """Only the ingress pods are reachable: on their HTTP port, from the ingress controller and Prometheus only."""
    m = manifests(target)
    for service in SERVICES:
        if service not in ("ingress", "console"):
            assert not _allowed(m, service, "ingress"), f"nothing connects to the {service}"
    http_port = m.container("ingress")["ports"][0]["containerPort"]
    namespaces = set()
    for rule in _allowed(m, "ingress", "ingress"):
        assert [p["port"] for p in rule["ports"]] == [http_port]
        for peer in rule["from"]:
            assert set(peer) == {"namespaceSelector"}, "no address ranges, no pods of this namespace"
            namespaces.add(peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"])
    assert namespaces == {"ingress-nginx", "monitoring"}


@pytest.mark.parametrize("target", TARGETS)
def test_every_service_may_reach_nats_and_only_workers_reach_out(target: str) -> None:
    """All services may reach NATS (4222); only controller and session reach HTTPS outside the cluster;
    the others reach NATS and DNS, nothing else."""
    m = manifests(target)
    for service in SERVICES:
        egress = _allowed(m, service, "egress")
        ports = {p["port"] for rule in egress for p in rule.get("ports", [])}
        assert 4222 in ports, service
        outside = [peer for rule in egress for peer in rule["to"] if "ipBlock" in peer]
        if service not in REACH_OPENAI:
            assert not outside, service
            assert ports == {53, 4222}, service
        else:
            for peer in outside:
                excepted = [ipaddress.ip_network(c) for c in peer["ipBlock"]["except"]]
                assert ipaddress.ip_network("10.0.0.0/8") in excepted, "cluster-internal ranges stay closed"
            assert ports <= {53, 443, 4222}, service


@pytest.mark.parametrize("target", TARGETS)
def test_only_the_webhook_path_is_exposed_over_tls(target: str) -> None:
    """The Ingress serves only POST /webhooks/openai's path, over TLS, to the Service of the ingress pods."""
    m = manifests(target)
    ingress = m.one("Ingress", "switchboard-webhook")
    (rule,) = ingress["spec"]["rules"]
    assert ingress["spec"]["tls"][0]["hosts"] == [rule["host"]]
    (path,) = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == (WEBHOOK_PATH, "Exact")
    service = m.one("Service", path["backend"]["service"]["name"])
    assert service["spec"]["type"] == "ClusterIP"
    assert _selects({"matchLabels": service["spec"]["selector"]}, _pod_labels(m, "ingress"))
    others = {s["metadata"]["name"] for s in m.of_kind("Service")} - {service["metadata"]["name"]}
    assert others == {"switchboard-console", CONSOLE_PROXY}, "nothing else gets a Service"


@pytest.mark.parametrize("target", TARGETS)
def test_the_proxy_and_the_ingress_refuse_the_same_body_size(target: str) -> None:
    """The Ingress's proxy-body-size is the ingress's INGRESS_MAX_BODY_BYTES, so either refusal is the same."""
    m = manifests(target)
    ingress = m.one("Ingress", "switchboard-webhook")
    proxy = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
    units = {"k": 1024, "m": 1024**2}
    assert int(proxy[:-1]) * units[proxy[-1]] == int(m.env("ingress")["INGRESS_MAX_BODY_BYTES"]["value"])


@pytest.mark.parametrize("target", TARGETS)
def test_policy_reloads_in_place(target: str) -> None:
    """The routing policy ConfigMap keeps its name (no hash) and is mounted as a directory, so edits reach the file."""
    m = manifests(target)
    if m.rendered:
        configmap = m.one("ConfigMap", "switchboard-policy")
        assert configmap["data"]["policy.yaml"] == (BASE / "policy.yaml").read_text()
    spec = m.deployment("controller")["spec"]["template"]["spec"]
    volume = next(v for v in spec["volumes"] if v.get("configMap", {}).get("name") == "switchboard-policy")
    (mount,) = [vm for vm in m.container("controller")["volumeMounts"] if vm["name"] == volume["name"]]
    assert "subPath" not in mount
    assert m.env("controller")["SWITCHBOARD_POLICY"]["value"] == f"{mount['mountPath']}/policy.yaml"


def test_shipped_policy_is_valid() -> None:
    """The policy the ConfigMap carries loads with the controller's own validation."""
    policy = load_policy(BASE / "policy.yaml")
    assert policy.rules


def _proxy_labels(m: Manifests) -> dict[str, str]:
    labels: dict[str, str] = m.one("Deployment", CONSOLE_PROXY)["spec"]["template"]["metadata"]["labels"]
    return labels


@pytest.mark.parametrize("target", TARGETS)
def test_only_the_proxy_reaches_the_console_and_only_through_its_own_tls_host(target: str) -> None:
    """The console accepts connections from oauth2-proxy's pods alone, on its HTTP port; the proxy from the
    ingress controller alone; the console's Ingress (TLS) leads to the proxy, never to the console."""
    m = manifests(target)
    console_port = m.container("console")["ports"][0]["containerPort"]
    for rule in _allowed(m, "console", "ingress"):
        assert [p["port"] for p in rule["ports"]] == [console_port]
        for peer in rule["from"]:
            assert set(peer) == {"podSelector"} and _selects(peer["podSelector"], _proxy_labels(m))
    proxy_rules = [r for p in m.of_kind("NetworkPolicy") if _selects(p["spec"]["podSelector"], _proxy_labels(m))
                   for r in p["spec"].get("ingress", [])]  # fmt: skip
    assert proxy_rules and all(
        [peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for peer in r["from"]]
        == ["ingress-nginx"]
        for r in proxy_rules
    )
    ingress = m.one("Ingress", "switchboard-console")
    (rule,) = ingress["spec"]["rules"]
    assert ingress["spec"]["tls"][0]["hosts"] == [rule["host"]]
    (path,) = rule["http"]["paths"]
    assert path["backend"]["service"]["name"] == CONSOLE_PROXY
    assert m.env("console")["SWITCHBOARD_CONSOLE_AUTH"]["value"] == "proxy"


@pytest.mark.parametrize("target", TARGETS)
def test_the_proxy_tells_the_console_who_the_operator_is_and_never_reaches_nats(target: str) -> None:
    """oauth2-proxy injects X-Auth-Request-Email from the email claim, streams to the console unbuffered,
    and may reach only the console, DNS and HTTPS outside the cluster (the identity provider)."""
    m = manifests(target)
    config = yaml.safe_load(m.one("ConfigMap", "switchboard-console-oauth")["data"]["alpha.yaml"])
    (header,) = config["injectRequestHeaders"]
    assert (header["name"], header["values"]) == ("X-Auth-Request-Email", [{"claim": "email"}])
    (upstream,) = config["upstreamConfig"]["upstreams"]
    assert upstream["uri"] == "http://switchboard-console:8090" and upstream["flushInterval"]
    egress = [r for p in m.of_kind("NetworkPolicy") if _selects(p["spec"]["podSelector"], _proxy_labels(m))
              for r in p["spec"].get("egress", [])]  # fmt: skip
    assert {p["port"] for r in egress for p in r["ports"]} == {53, 443, 8090}
    annotations = m.one("Ingress", "switchboard-console")["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"

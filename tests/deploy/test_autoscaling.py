"""Session workers scale on the "session" consumer's lag: calls waiting to be claimed plus calls live."""

from __future__ import annotations

from typing import Any

import yaml
from kubernetes_validate import utils as kubernetes_validate  # type: ignore[import-untyped]

from switchboard.session.worker import CONSUMER
from switchboard.shared.events import STREAM
from tests.deploy.manifests import KUBERNETES_VERSION, NATS_VALUES, Doc, manifests


def _scaled_object() -> Doc:
    (scaled,) = manifests("prod").of_kind("ScaledObject")
    return scaled


def _trigger() -> dict[str, Any]:
    (trigger,) = _scaled_object()["spec"]["triggers"]
    assert trigger["type"] == "nats-jetstream"
    metadata: dict[str, Any] = trigger["metadata"]
    return metadata


def test_scaler_watches_the_session_consumer_of_the_calls_stream() -> None:
    """The trigger names the stream and durable consumer the workers claim from, in the account they use."""
    metadata = _trigger()
    assert all(isinstance(v, str) for v in metadata.values()), "KEDA trigger metadata is string-valued"
    assert (metadata["stream"], metadata["consumer"]) == (STREAM, CONSUMER)
    values = yaml.safe_load(NATS_VALUES.read_text())
    accounts = values["config"]["merge"]["accounts"]
    assert any(u["user"] == "session" for u in accounts[metadata["account"]]["users"])
    host, _, port = metadata["natsServerMonitoringEndpoint"].rpartition(":")
    assert int(port) == values["config"]["monitor"]["port"]
    assert host.startswith("nats-headless."), "KEDA reaches each clustered server through the headless service"


def test_scaler_keeps_headroom_below_the_worker_cap() -> None:
    """Pods are added well before the live calls reach SESSION_MAX_CALLS per pod."""
    cap = int(manifests("prod").env("session")["SESSION_MAX_CALLS"]["value"])
    target = int(_trigger()["lagThreshold"])
    assert 0 < target < cap


def test_autoscaler_owns_the_session_replica_count() -> None:
    """In prod the session Deployment sets no replica count (the autoscaler's) and never goes below two."""
    m = manifests("prod")
    scaled = _scaled_object()
    assert scaled["spec"]["scaleTargetRef"]["name"] == m.deployment("session")["metadata"]["name"]
    assert "replicas" not in m.deployment("session")["spec"]
    assert 2 <= scaled["spec"]["minReplicaCount"] < scaled["spec"]["maxReplicaCount"]


def test_the_hpa_keda_creates_validates_strictly() -> None:
    """The HorizontalPodAutoscaler KEDA derives (bounds, behaviour, external target) is valid autoscaling/v2."""
    scaled = _scaled_object()
    spec = scaled["spec"]
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": f"keda-hpa-{scaled['metadata']['name']}"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", **spec["scaleTargetRef"]},
            "minReplicas": spec["minReplicaCount"],
            "maxReplicas": spec["maxReplicaCount"],
            "behavior": spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"],
            "metrics": [
                {
                    "type": "External",
                    "external": {
                        "metric": {"name": "s0-nats-jetstream-calls"},
                        "target": {"type": "AverageValue", "averageValue": _trigger()["lagThreshold"]},
                    },
                }
            ],
        },
    }
    kubernetes_validate.validate(hpa, KUBERNETES_VERSION, strict=True)
    scale_down = hpa["spec"]["behavior"]["scaleDown"]  # type: ignore[index]
    assert scale_down["stabilizationWindowSeconds"] >= 300, "scaling down drains calls: not on a blip"

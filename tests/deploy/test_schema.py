"""The manifests render with kustomize and validate strictly against the pinned Kubernetes version."""

from __future__ import annotations

import pytest
from kubernetes_validate import utils as kubernetes_validate  # type: ignore[import-untyped]

from tests.deploy.manifests import KUBERNETES_VERSION, OVERLAYS, SERVICES, TARGETS, manifests

# Custom resources have no schema in kubernetes-validate; each one is checked by its own tests.
CUSTOM_KINDS = {"ScaledObject": "keda.sh/v1alpha1"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_with_kustomize(overlay: str) -> None:
    """`kubectl kustomize` renders the overlay into Switchboard's five Deployments, the console's oauth2-proxy
    and their companions."""
    m = manifests(overlay)
    assert {d["metadata"]["name"] for d in m.of_kind("Deployment")} == {
        "switchboard-ingress",
        "switchboard-controller",
        "switchboard-session",
        "switchboard-projector",
        "switchboard-console",
        "switchboard-console-proxy",
    }
    assert all(d["metadata"].get("namespace") for d in m.docs if d["kind"] != "Namespace")


@pytest.mark.parametrize("target", TARGETS)
def test_every_object_validates_strictly(target: str) -> None:
    """Each object validates with kubernetes-validate --strict (no unknown fields) against the pinned version."""
    m = manifests(target)
    errors = []
    for doc in m.docs:
        if doc["kind"] in CUSTOM_KINDS:
            assert doc["apiVersion"] == CUSTOM_KINDS[doc["kind"]]
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(exc.message)
    assert not errors, "\n".join(errors)


def test_only_prod_carries_the_autoscaler() -> None:
    """The KEDA ScaledObject is the prod overlay's only custom resource; dev runs without KEDA."""
    assert [d["kind"] for d in manifests("prod").docs if d["kind"] in CUSTOM_KINDS] == ["ScaledObject"]
    assert not [d for d in manifests("dev").docs if d["kind"] in CUSTOM_KINDS]


@pytest.mark.parametrize("target", TARGETS)
def test_no_secret_is_inlined(target: str) -> None:
    """No Secret object ships with the manifests and every credential comes from a secretKeyRef."""
    m = manifests(target)
    assert not m.of_kind("Secret")
    for service in SERVICES:
        env = m.env(service)
        for name in ("NATS_URL", "OPENAI_API_KEY", "OPENAI_WEBHOOK_SECRET"):
            if name in env:
                assert "secretKeyRef" in env[name].get("valueFrom", {}), f"{service}: {name} must come from a Secret"

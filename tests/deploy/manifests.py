"""The Kubernetes manifests under deploy/, as the tests see them: rendered by kustomize, or the base's files.

`kubectl kustomize` renders each overlay (the kubectl from the test dependencies, else one on PATH). Where
no kubectl can be had, only the rendered targets are skipped: the base's own files are complete objects,
so schema and posture checks still run on them.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
BASE = DEPLOY / "base"
NATS_VALUES = DEPLOY / "nats" / "values.yaml"
NATS_DEV_VALUES = DEPLOY / "nats" / "values-dev.yaml"

# The Kubernetes version the manifests are written for (and validated against): the oldest we support.
KUBERNETES_VERSION = "1.33"
OVERLAYS = ("dev", "prod")
# "base" is the base's files as written; the overlays are rendered.
TARGETS = ("base", *OVERLAYS)
SERVICES = ("ingress", "controller", "session", "projector", "console")
# The third-party Deployment: oauth2-proxy in front of the console (its own image, user and probes).
CONSOLE_PROXY = "switchboard-console-proxy"
# Services that must run as exactly one pod (events applied in order): replicas 1, recreated, never surged.
SINGLETONS = ("projector",)

Doc = dict[str, Any]


def kubectl() -> str | None:
    """The kubectl beside this interpreter (the test dependency), else the one on PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    if beside.exists():
        return str(beside)
    return shutil.which("kubectl")


@functools.cache
def render(overlay: str) -> tuple[Doc, ...]:
    """`kubectl kustomize deploy/overlays/<overlay>`, parsed. Raises on a kustomize error."""
    binary = kubectl()
    if binary is None:
        raise LookupError("no kubectl")
    out = subprocess.run(
        [binary, "kustomize", str(DEPLOY / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    if out.returncode != 0:
        raise AssertionError(f"kubectl kustomize {overlay} failed:\n{out.stderr}")
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def kustomization(path: Path) -> Doc:
    loaded: Doc = yaml.safe_load((path / "kustomization.yaml").read_text())
    return loaded


@functools.cache
def base_files() -> tuple[Doc, ...]:
    """Every object in the files the base kustomization lists, as written."""
    docs: list[Doc] = []
    for name in kustomization(BASE)["resources"]:
        docs.extend(d for d in yaml.safe_load_all((BASE / name).read_text()) if d)
    return tuple(docs)


@dataclass(frozen=True)
class Manifests:
    """One target's objects, with the look-ups the tests share."""

    target: str
    docs: tuple[Doc, ...]

    @property
    def rendered(self) -> bool:
        return self.target != "base"

    def of_kind(self, kind: str) -> list[Doc]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str, name: str) -> Doc:
        found = [d for d in self.of_kind(kind) if d["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.target}: expected one {kind} {name}, found {len(found)}"
        return found[0]

    def deployment(self, service: str) -> Doc:
        return self.one("Deployment", f"switchboard-{service}")

    def container(self, service: str) -> Doc:
        containers = self.deployment(service)["spec"]["template"]["spec"]["containers"]
        assert len(containers) == 1
        container: Doc = containers[0]
        return container

    def configmap_data(self, name: str) -> dict[str, str]:
        """The data of ConfigMap `name` (as referenced: rendered names carry kustomize's hash), or, in the
        base's files, the literals of its generator."""
        if self.rendered:
            data: dict[str, str] = self.one("ConfigMap", name).get("data", {})
            return data
        for generator in kustomization(BASE).get("configMapGenerator", []):
            if generator["name"] == name:
                return dict(literal.split("=", 1) for literal in generator.get("literals", []))
        raise AssertionError(f"base: no ConfigMap generator {name}")

    def env(self, service: str) -> dict[str, Doc]:
        """Every variable the service's container gets, by name: its `env` entry, or a ConfigMap's key."""
        container = self.container(service)
        result: dict[str, Doc] = {}
        for source in container.get("envFrom", []):
            assert set(source) == {"configMapRef"}, f"{service}: envFrom only from ConfigMaps, got {source}"
            for key, value in self.configmap_data(source["configMapRef"]["name"]).items():
                result[key] = {"name": key, "value": value}
        for entry in container.get("env", []):
            result[entry["name"]] = entry
        return result


def manifests(target: str) -> Manifests:
    """The objects of `target`; skips the test when an overlay cannot be rendered for want of kubectl."""
    if target == "base":
        return Manifests(target, base_files())
    if kubectl() is None:
        pytest.skip("no kubectl to render the overlays (install the test dependencies on Linux x86-64)")
    return Manifests(target, render(target))


def pod_specs(m: Manifests) -> Iterator[tuple[str, Doc]]:
    for deployment in m.of_kind("Deployment"):
        yield deployment["metadata"]["name"], deployment["spec"]["template"]["spec"]

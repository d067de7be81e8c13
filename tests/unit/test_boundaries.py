"""The workspace's boundaries: which distribution may import which, and each declares what it imports.

Services import only `shared` (never each other, the CLI or the emulator); `shared` imports no service;
the emulator imports nothing of Switchboard's but the pure `switchboard.shared.sip`, and its HTTP handlers
never import its server; the pure cores import no I/O library; no import cycles anywhere (import-linter's
contracts, in the root pyproject.toml).
Each distribution's pyproject.toml lists exactly the workspace packages and third-party packages its
code imports (deptry, and the check below for the workspace's own, which share one namespace).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MEMBERS = (
    "shared",
    "services/ingress",
    "services/controller",
    "services/session",
    "services/projector",
    "services/console",
    "emulator",
    "cli",
)


def _project(member: str) -> dict[str, Any]:
    return tomllib.loads((ROOT / member / "pyproject.toml").read_text())


def _distribution_of_module() -> dict[str, str]:
    """Top-level `switchboard.X` module → the workspace distribution that ships it."""
    owners = {}
    for member in MEMBERS:
        project = _project(member)
        name = project["project"]["name"]
        for package in (ROOT / member / "src" / "switchboard").iterdir():
            if package.is_dir() and (package / "__init__.py").exists():
                owners[f"switchboard.{package.name}"] = name
    return owners


def _workspace_imports(member: str) -> set[str]:
    """The `switchboard.X` packages the member's code imports (at any depth, lazily or not)."""
    found = set()
    for path in (ROOT / member / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names if node.module == "switchboard"]
            found |= {".".join(n.split(".")[:2]) for n in names if n.startswith("switchboard.")}
    return found


def test_the_import_contracts_hold() -> None:
    """import-linter keeps every contract: services apart, shared below them, pure cores, no import cycles."""
    done = subprocess.run([BIN / "lint-imports"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize("member", MEMBERS)
def test_each_distribution_declares_the_workspace_packages_it_imports_and_no_more(member: str) -> None:
    """A member's `switchboard-*` dependencies are exactly the workspace distributions its code imports."""
    owners = _distribution_of_module()
    project = _project(member)
    own = project["project"]["name"]
    declared = {d for d in project["project"]["dependencies"] if d.startswith("switchboard")}
    imported = {owners[m] for m in _workspace_imports(member) if m in owners} - {own}
    assert declared == imported


@pytest.mark.slow
@pytest.mark.parametrize("member", MEMBERS)
def test_each_distribution_declares_the_third_party_packages_it_imports_and_no_more(member: str) -> None:
    """deptry finds no missing, unused or transitive third-party dependency in the member's pyproject.toml."""
    unused_on_purpose = [_project(m)["project"]["name"] for m in MEMBERS]  # checked above
    unused_on_purpose += (
        _project(member).get("tool", {}).get("deptry", {}).get("per_rule_ignores", {}).get("DEP002", [])
    )
    ignores = "DEP002=" + "|".join(unused_on_purpose)
    done = subprocess.run(
        [BIN / "deptry", "src", "--known-first-party", "switchboard", "--per-rule-ignores", ignores, "--no-ansi"],
        cwd=ROOT / member, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr

"""The fast paths are fenced: nats-py is pinned, and the private calls they make still exist as used."""

from __future__ import annotations

import inspect
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from nats.aio.client import Client

from switchboard.shared import config
from switchboard.shared.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def _locked(name: str) -> str:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return next(p["version"] for p in lock["package"] if p["name"] == name)


def test_the_installed_nats_py_is_the_locked_one() -> None:
    """What runs is what uv.lock pins, so the private signatures below are those of a known release."""
    assert version("nats-py") == _locked("nats-py")


def test_the_shared_library_allows_only_the_nats_py_minor_release_it_was_checked_against() -> None:
    """A lock refresh cannot move nats-py past the minor release the fast paths were checked against."""
    shared = tomllib.loads((ROOT / "shared" / "pyproject.toml").read_text())
    (spec,) = [d for d in shared["project"]["dependencies"] if d.startswith("nats-py")]
    major, minor, *_ = _locked("nats-py").split(".")
    assert spec == f"nats-py>={major}.{minor},<{major}.{int(minor) + 1}"


def test_the_private_calls_of_the_pipelined_publisher_keep_their_signatures() -> None:
    """``_send_command(cmd, priority=False)`` and ``_flush_pending(force_flush=False)``, as the publisher calls them."""
    send = inspect.signature(Client._send_command)
    flush = inspect.signature(Client._flush_pending)
    assert list(send.parameters) == ["self", "cmd", "priority"]
    assert send.parameters["priority"].default is False
    assert list(flush.parameters) == ["self", "force_flush"]
    assert flush.parameters["force_flush"].default is False
    assert inspect.iscoroutinefunction(Client._send_command)
    assert inspect.iscoroutinefunction(Client._flush_pending)


def test_the_client_properties_the_publisher_reads_are_there() -> None:
    """The publisher refuses to write into the reconnect buffer by reading these two properties."""
    assert isinstance(inspect.getattr_static(Client, "is_draining_pubs"), property)
    assert isinstance(inspect.getattr_static(Client, "max_payload"), property)


def test_the_fast_paths_are_on_unless_switched_off() -> None:
    """SWITCHBOARD_NATS_FAST_PATH=off turns both fast paths to nats-py's public API; default on."""
    assert config.load({}).nats_fast_path is True
    assert config.load({"SWITCHBOARD_NATS_FAST_PATH": "off"}).nats_fast_path is False
    assert config.load({"SWITCHBOARD_NATS_FAST_PATH": "on"}).nats_fast_path is True


def test_a_fast_path_switch_that_is_neither_on_nor_off_is_a_config_error() -> None:
    """A typo in the switch is one clear configuration error, not a silent default."""
    with pytest.raises(ConfigError, match="SWITCHBOARD_NATS_FAST_PATH must be 'on' or 'off'"):
        config.load({"SWITCHBOARD_NATS_FAST_PATH": "fast"})

"""Finding the `switchboard up` that runs from this folder, so commands run here need no ``NATS_URL``.

`up` writes ``running.json`` into its data folder (``.switchboard`` by default) once everything is
ready and removes it when it stops. A command run from that folder, or one below it, without ``NATS_URL``
reads it: the NATS URL, the emulator's port and the policy file. A file left by an `up` that was killed
names a process that no longer runs, and is ignored.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import msgspec

DATA_DIR = Path(".switchboard")
RUNNING_FILE = "running.json"


class Running(msgspec.Struct, frozen=True, kw_only=True):
    """Where a `switchboard up` serves: what commands run from its folder connect to."""

    pid: int
    nats_url: str
    ingress_port: int
    emulator_port: int | None = None
    policy_path: str | None = None
    """The policy file its controller runs when none is pushed (absolute), None for the built-in one."""


def write(data_dir: Path, running: Running) -> Path:
    """Record `running` in `data_dir` (atomically: a reader never sees half a file)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / RUNNING_FILE
    partial = path.with_suffix(".tmp")
    partial.write_bytes(msgspec.json.encode(running))
    partial.replace(path)
    return path


def remove(data_dir: Path, pid: int) -> None:
    """Remove the record if it is still this process's (another `up` may have taken the folder since)."""
    found = _read(data_dir / RUNNING_FILE)
    if found is not None and found.pid == pid:
        with contextlib.suppress(FileNotFoundError):
            (data_dir / RUNNING_FILE).unlink()


def find(start: Path) -> Running | None:
    """The `up` running from `start` or a folder above it (its default data folder), if one still runs."""
    for folder in (start, *start.parents):
        found = _read(folder / DATA_DIR / RUNNING_FILE)
        if found is not None and _alive(found.pid):
            return found
    return None


def _read(path: Path) -> Running | None:
    try:
        return msgspec.json.decode(path.read_bytes(), type=Running)
    except (OSError, msgspec.ValidationError, msgspec.DecodeError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True

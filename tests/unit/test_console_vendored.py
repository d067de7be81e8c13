"""The console's third-party files are exactly the released files recorded in vendored.json."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import switchboard.console

VENDOR = Path(switchboard.console.__file__).parent / "static" / "vendor"


def test_every_vendored_file_has_the_sha256_and_version_recorded() -> None:
    """Each file in static/vendor is listed with its package, version and licence, and hashes as recorded."""
    manifest = json.loads((VENDOR / "vendored.json").read_text())
    listed = {f["file"]: f for f in manifest["files"]}
    assert set(listed) == {p.name for p in VENDOR.iterdir() if p.name != "vendored.json"}
    for name, entry in listed.items():
        assert entry["version"] in name and entry["package"] and entry["license"]
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == entry["sha256"], name


def test_the_pages_load_only_the_vendored_files_from_the_console_itself() -> None:
    """No page loads a script or style from another host: every src and href is a path of the console."""
    templates = Path(switchboard.console.__file__).parent / "templates"
    text = "".join(p.read_text() for p in templates.glob("*.html"))
    assert not re.search(r'(src|href)="(https?:)?//', text)
    for name in json.loads((VENDOR / "vendored.json").read_text())["files"]:
        assert f"/static/vendor/{name['file']}" in text

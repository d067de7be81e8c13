"""The command line's own checks: kind globs when parsed, `--version`, and `secret`."""

from __future__ import annotations

import argparse

import pytest

from switchboard.cli.args import parse_kind
from switchboard.cli.main import main
from switchboard.shared.webhooks import parse_secrets


@pytest.mark.parametrize("kind", ["ended", "rt.*", "*.done", "session.claimed", "rt.response.output_audio.delta"])
def test_kind_globs_are_taken_as_they_are(kind: str) -> None:
    """A kind or a glob of kinds passes through unchanged."""
    assert parse_kind(kind) == kind


@pytest.mark.parametrize(
    ("kind", "hint"),
    [("ended decided", True), ("ended,decided", True), ("calls.>", False), ("", False), ("rt..x", False)],
)
def test_a_kind_that_is_no_kind_is_refused_when_parsed(kind: str, hint: bool) -> None:
    """Spaces, commas, `>` or empty tokens are refused at once; a list gets the one-per-flag hint."""
    with pytest.raises(argparse.ArgumentTypeError, match="not an event kind or glob") as refused:
        parse_kind(kind)
    assert ("one per --kind" in str(refused.value)) == hint


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    """``switchboard --version`` prints ``switchboard <version>`` and exits 0."""
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip().startswith("switchboard 0.")


def test_secret_prints_a_fresh_webhook_secret_the_ingress_accepts(capsys: pytest.CaptureFixture[str]) -> None:
    """``switchboard secret`` prints one new ``whsec_…`` that OPENAI_WEBHOOK_SECRET parses, different each time."""
    assert main(["secret"]) == 0
    first = capsys.readouterr().out.strip()
    assert main(["secret"]) == 0
    second = capsys.readouterr().out.strip()
    assert first.startswith("whsec_") and first != second
    assert len(parse_secrets(first)) == 1

"""`--help` of every command and service lists the environment variables it reads, with their defaults."""

from __future__ import annotations

import pytest

from switchboard.cli.main import _READER, _parser, main
from switchboard.ingress.main import main as ingress_main
from switchboard.session.main import main as session_main
from switchboard.shared.config import READS, VARIABLES

COMMANDS = sorted(name for name in _parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]


def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    assert exited.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", [c for c in COMMANDS if _READER.get(c, "log") is not None])
def test_a_commands_help_lists_the_variables_it_reads(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`switchboard COMMAND --help` ends with an environment section: each variable it reads and its default."""
    text = _help(capsys, command, "--help")
    environment = text.split("\nenvironment:\n", 1)[1]
    for name in READS[_READER.get(command, "log") or "log"]:
        line = next(line for line in environment.splitlines() if line.split()[0] == name)
        assert VARIABLES[name].meaning in line


@pytest.mark.parametrize("action", ["whatif", "push", "show", "reset"])
def test_the_policy_actions_that_reach_nats_list_nats_url(action: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`switchboard policy ACTION --help` names NATS_URL and SWITCHBOARD_POLICY."""
    text = _help(capsys, "policy", action, "--help")
    assert "\n  NATS_URL " in text and "\n  SWITCHBOARD_POLICY " in text


@pytest.mark.parametrize(("service", "name"), [(ingress_main, "ingress"), (session_main, "session")])
def test_a_services_own_script_lists_its_variables(
    service: object, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`switchboard-ingress --help` (the image's entrypoint) lists the same variables as `switchboard ingress`."""
    with pytest.raises(SystemExit):
        service(["--help"])  # type: ignore[operator]
    text = capsys.readouterr().out
    assert [line.split()[0] for line in text.split("\nenvironment:\n", 1)[1].splitlines()] == list(READS[name])

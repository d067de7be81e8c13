"""The README names only commands and flags that exist: each `switchboard …` it shows parses."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from switchboard.cli.main import _parser

README = Path(__file__).parents[2] / "README.md"
_MENTION = re.compile(r"switchboard((?: [a-z][a-z-]*)+)((?: [^`#|\n]*)?)")


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _mentions() -> list[str]:
    """Every `switchboard …` in the README's code: code blocks' lines and inline code spans."""
    text = README.read_text()
    blocks = re.findall(r"```(?:sh)?\n(.*?)```", text, flags=re.DOTALL)
    code = [line for block in blocks for line in block.splitlines()] + re.findall(r"`([^`\n]+)`", text)
    return [m.group(0) for line in code for m in _MENTION.finditer(line.split("  #")[0])]


MENTIONS = sorted(set(_mentions()))


def test_the_readme_shows_commands() -> None:
    """The check below has something to check: the README shows the quick start's commands."""
    assert {"switchboard up", "switchboard tail"} <= {m.strip() for m in MENTIONS}


@pytest.mark.parametrize("mention", MENTIONS)
def test_each_command_the_readme_names_exists_with_its_flags(mention: str) -> None:
    """`switchboard WORDS… --flags` in the README: the command (and action) exists, and so does each flag."""
    words = mention.split()[1:]
    parser = _parser()
    assert words[0] in _subcommands(parser) or words[0].startswith("-"), f"{mention}: no such command"
    for word in words:
        commands = _subcommands(parser)
        if word not in commands:  # a flag or an argument (a call id, a file): the command is named
            break
        parser = commands[word]
    options = {o for action in parser._actions for o in action.option_strings}
    for flag in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", mention):
        assert flag in options, f"{mention}: {parser.prog} has no {flag}"

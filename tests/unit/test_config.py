"""Reading the environment: defaults that let services share a host, and one clear error per bad value."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from switchboard.shared import config
from switchboard.shared.errors import ConfigError


@pytest.mark.parametrize(
    ("raw", "port"),
    [(None, 0), ("", 0), ("8081", 8081), ("off", None), ("OFF", None), ("0", None)],
    ids=["unset", "empty", "a-port", "off", "OFF", "zero"],
)
def test_the_health_port_is_any_free_one_unless_set_or_turned_off(raw: str | None, port: int | None) -> None:
    """HEALTH_PORT unset is 0 (any free port); a number is that port; ``off`` or 0 is no side door."""
    env = {} if raw is None else {"HEALTH_PORT": raw}
    assert config.load(env).health_port == port


@pytest.mark.parametrize("raw", ["eighty", "70000", "-1"])
def test_a_health_port_that_is_no_port_is_a_config_error(raw: str) -> None:
    """A health port that is not a port (or ``off``) names the variable and what it got."""
    with pytest.raises(ConfigError, match="HEALTH_PORT"):
        config.load({"HEALTH_PORT": raw})


def test_a_trace_url_without_its_placeholder_is_a_config_error() -> None:
    """SWITCHBOARD_TRACE_URL must say where the trace id goes; a good one is kept as given."""
    with pytest.raises(ConfigError, match=r"SWITCHBOARD_TRACE_URL must contain \{trace_id\}"):
        config.load({"SWITCHBOARD_TRACE_URL": "http://jaeger/trace/"})
    assert config.load({"SWITCHBOARD_TRACE_URL": "http://jaeger/trace/{trace_id}"}).trace_url == (
        "http://jaeger/trace/{trace_id}"
    )


class _Recording(dict[str, str]):
    """An environment that remembers every name looked up in it."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def get(self, key: str, default: object = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return super().__contains__(key)


def test_the_variables_listed_are_the_ones_read() -> None:
    """`config.VARIABLES` (what `--help` lists) names exactly the variables `load` reads."""
    env = _Recording()
    config.load(env)
    assert env.asked == set(config.VARIABLES)


def test_the_docs_configuration_table_lists_every_variable() -> None:
    """docs/architecture.md's configuration table has a row for each variable, and no other."""
    text = (Path(__file__).parents[2] / "docs" / "architecture.md").read_text()
    table = text.split("## Configuration (environment)", 1)[1].split("\n## ", 1)[0]
    assert set(re.findall(r"^\| `([A-Z_]+)` \|", table, flags=re.MULTILINE)) == set(config.VARIABLES)


def test_every_reader_reads_known_variables() -> None:
    """Each service's and command's list of variables names only variables of the contract."""
    for reader, names in config.READS.items():
        assert set(names) <= set(config.VARIABLES), reader

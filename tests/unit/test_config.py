"""Reading the environment: defaults that let services share a host, and one clear error per bad value."""

from __future__ import annotations

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

"""The console's sign-in rules (pure): the session cookie, the proxy's header, the Origin of actions."""

from __future__ import annotations

import pytest

from switchboard.console import auth


def test_a_session_cookie_signs_in_the_name_it_was_made_for() -> None:
    """The cookie made for alice under a token signs in alice under that token, nobody under another."""
    cookie = auth.session_cookie("t0ken", "alice")
    assert auth.session_operator("t0ken", cookie) == "alice"
    assert auth.session_operator("other", cookie) is None


@pytest.mark.parametrize("cookie", [None, "", "garbage", "YWxpY2U.", "Ym9i." + "0" * 64, "%%%.abc"])
def test_a_missing_or_forged_cookie_signs_nobody_in(cookie: str | None) -> None:
    """No cookie, a garbled one or one with a wrong MAC: nobody."""
    assert auth.session_operator("t0ken", cookie) is None


def test_the_proxy_header_is_the_operator_only_in_proxy_mode() -> None:
    """X-Auth-Request-Email names the operator behind the proxy, and is ignored with the token sign-in."""
    headers = {auth.PROXY_HEADER: "bob@example.com"}
    assert auth.operator("proxy", None, headers, {}) == "bob@example.com"
    assert auth.operator("token", "t0ken", headers, {}) is None
    assert auth.operator("proxy", None, {}, {}) is None


@pytest.mark.parametrize(
    ("origin", "same"),
    [("http://127.0.0.1:8090", True), ("http://127.0.0.1:8091", False), ("https://127.0.0.1:8090", False),
     ("http://evil.example", False), (None, False), ("null", False), ("http://127.0.0.1:8090/x", False)],
)  # fmt: skip
def test_only_the_consoles_own_origin_may_act(origin: str | None, same: bool) -> None:
    """An action's Origin must be the console's scheme, host and port; none at all is refused."""
    assert auth.same_origin(origin, "127.0.0.1:8090", "http") is same


@pytest.mark.parametrize(("given", "name"), [("alice", "alice"), ("", "operator"), ("<script>", "operator")])
def test_a_name_given_at_sign_in_is_kept_when_it_is_plain(given: str, name: str) -> None:
    """Letters, digits and a few marks make a name; anything else signs in as `operator`."""
    assert auth.operator_name(given) == name

"""Who is signed in to the console, and whether a request may act: pure rules, no I/O.

Token sign-in (the default): visiting ``/?token=<SWITCHBOARD_CONSOLE_TOKEN>`` once sets a session cookie
whose value is the operator's name and an HMAC of it under the token, so it needs no server-side store,
survives a restart, and stops working when the token changes. Proxy sign-in: behind oauth2-proxy the
operator is the ``X-Auth-Request-Email`` header the proxy sets, trusted only when the console is
configured for it (`SWITCHBOARD_CONSOLE_AUTH=proxy`; the NetworkPolicy lets only the proxy reach it).
Actions are POST only, and only from the console's own pages: their ``Origin`` must be the console's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

COOKIE = "switchboard_console"
PROXY_HEADER = "X-Auth-Request-Email"
DEFAULT_OPERATOR = "operator"
_NAME = re.compile(r"^[\w .@+\-]{1,64}$")


def operator_name(raw: str | None) -> str:
    """The name an operator gave at sign-in, or the default one when it is empty or unusable."""
    name = (raw or "").strip()
    return name if _NAME.match(name) else DEFAULT_OPERATOR


def token_matches(token: str, given: str) -> bool:
    """Whether `given` is the token (constant time)."""
    return hmac.compare_digest(token.encode(), given.encode())


def _mac(token: str, name: str) -> str:
    return hmac.new(token.encode(), b"console-session:" + name.encode(), hashlib.sha256).hexdigest()


def session_cookie(token: str, name: str) -> str:
    """The cookie value that signs in `name`."""
    encoded = base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")
    return f"{encoded}.{_mac(token, name)}"


def session_operator(token: str, cookie: str | None) -> str | None:
    """The operator a session cookie signs in, or None when it is missing, garbled or not made with `token`."""
    if not cookie or "." not in cookie:
        return None
    encoded, mac = cookie.rsplit(".", 1)
    try:
        name = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    return name if hmac.compare_digest(mac, _mac(token, name)) else None


def operator(mode: str, token: str | None, headers: Mapping[str, str], cookies: Mapping[str, str]) -> str | None:
    """The signed-in operator of a request, or None: by the proxy's header in ``proxy`` mode, else by cookie."""
    if mode == "proxy":
        email = (headers.get(PROXY_HEADER) or "").strip()
        return email[:200] or None
    if token is None:
        return None
    return session_operator(token, cookies.get(COOKIE))


def same_origin(origin: str | None, host: str, scheme: str) -> bool:
    """Whether a request's ``Origin`` is the console's own (`scheme`://`host`): a missing one is not."""
    if not origin or origin == "null":
        return False
    parts = urlsplit(origin)
    return parts.scheme == scheme and parts.netloc.lower() == host.lower() and not parts.path.strip("/")

"""SIP and tel URIs as Switchboard meets them: the number in a ``From``/``To`` header, and refer targets.

Pure and stdlib only, so every reader of a header and every checker of a target agrees: the controller's
policy matching and validation, its ``cmd.<id>.refer`` command, the projections, the console, the session
worker's ``transfer_call`` tool and the emulator (which imports nothing else of Switchboard's).

`user_part` reads what a person would call the number of a header value::

    "Ann" <sip:+14155550101@sip.example.com;user=phone>;tag=x   →  +14155550101
    <tel:+14155550101>;tag=x                                    →  +14155550101

`target_uri_problem` says what is wrong with a refer target (``tel:`` with a number, ``sip:``/``sips:``
with ``user@host`` or a host), or None when it is fine.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

__all__ = ["SCHEMES", "TARGET_URI_EXAMPLE", "target_uri_problem", "user_part"]

SCHEMES = ("tel", "sip", "sips")
"""The URI schemes a header value or a refer target may use (matched case-insensitively)."""

TARGET_URI_EXAMPLE = "tel:+14155550123"

_NUMBER = re.compile(r"\+?[0-9][0-9().-]*")
"""A telephone number, with the visual separators RFC 3966 allows (``+1-415-555-0123``)."""


def _after_display_name(value: str) -> str:
    """`value` without a leading quoted display name (which may itself hold ``<``, ``>`` or ``"``)."""
    if not value.startswith('"'):
        return value
    i = 1
    while i < len(value):
        if value[i] == "\\":
            i += 2
        elif value[i] == '"':
            return value[i + 1 :]
        else:
            i += 1
    return ""  # an unterminated display name holds no URI


def _uri_of(value: str) -> str:
    """The URI in a header value: inside ``<…>`` when there are angle brackets, else the value itself."""
    rest = _after_display_name(value.strip())
    if "<" in rest:
        return rest.split("<", 1)[1].split(">", 1)[0].strip()
    return rest.strip()


def user_part(value: str) -> str | None:
    """The user part (for a phone call, the number) of a SIP header value such as ``From`` or ``To``.

    Reads ``sip:``/``sips:`` (the user before ``@``, without user parameters or password) and ``tel:``
    (the number, without ``;phone-context=…`` or other parameters) URIs, bare or in angle brackets after
    a display name, with header parameters after them; the scheme in any case; ``%2B`` decoded. A bare
    number (``+14155550101``) is its own number. Anything else, or an empty user, gives None.
    """
    uri = _uri_of(value)
    scheme, colon, rest = uri.partition(":")
    if not colon:
        return uri if _NUMBER.fullmatch(uri) else None
    scheme = scheme.lower()
    if scheme == "tel":
        user = rest.split(";", 1)[0]
    elif scheme in ("sip", "sips"):
        userinfo, at, _ = rest.partition("@")
        if not at:  # sip:host names a host, not a user
            return None
        user = userinfo.split(";", 1)[0].split(":", 1)[0]
    else:
        return None
    user = unquote(user)
    if not user or any(c.isspace() for c in user):
        return None
    return user


def target_uri_problem(uri: str) -> str | None:
    """What is wrong with `uri` as a refer/transfer target, phrased to follow its name, or None if it is fine.

    Accepted: ``tel:`` and a number (parameters such as ``;ext=12`` allowed), ``sip:`` or ``sips:`` and
    ``user@host`` or ``host``; the scheme in any case, no whitespace anywhere.
    """
    scheme, colon, rest = uri.partition(":")
    scheme = scheme.lower()
    if not colon or scheme not in SCHEMES:
        return f"must start with tel:, sip: or sips: (e.g. {TARGET_URI_EXAMPLE})"
    if any(c.isspace() for c in uri):
        return f"must not contain whitespace (e.g. {TARGET_URI_EXAMPLE})"
    if scheme == "tel":
        number, *params = rest.split(";")
        if not _NUMBER.fullmatch(number) or not all(params):
            return f"must have a number after tel: (e.g. {TARGET_URI_EXAMPLE})"
        return None
    parts = rest.split("@")
    if len(parts) > 2 or not all(parts):
        return f"must have a host or user@host after {scheme}: (e.g. {scheme}:desk@pbx.example.com)"
    return None

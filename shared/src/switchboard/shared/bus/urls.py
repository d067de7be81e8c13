"""NATS URLs: credentials taken out of the URL, so they go to every server of a cluster and into no log."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit, urlunsplit


def split_credentials(url: str) -> tuple[list[str], dict[str, str]]:
    """``nats://user:pass@host:4222,nats://host2:4222`` → (URLs without credentials, connect options).

    Credentials go to the client as options so that every server of a cluster gets them (nats-py sends
    the ones in a URL only to that URL's server), and so that no log line or error ever shows them.
    """
    servers: list[str] = []
    credentials: dict[str, str] = {}
    for raw in url.split(","):
        parts = urlsplit(raw.strip())
        if parts.username is not None:
            if parts.password is not None:
                credentials.update(user=unquote(parts.username), password=unquote(parts.password))
            else:
                credentials.update(token=unquote(parts.username))
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        if parts.port is not None:
            netloc += f":{parts.port}"
        servers.append(urlunsplit((parts.scheme or "nats", netloc, parts.path, parts.query, "")))
    return servers, credentials

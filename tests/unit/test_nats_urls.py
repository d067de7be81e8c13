"""NATS_URL credentials become connect options and never stay in the URLs that logs and errors show."""

from __future__ import annotations

from switchboard.shared.bus import split_credentials


def test_user_and_password_are_taken_out_of_every_url() -> None:
    """``user:pass@`` (percent-decoded) becomes options; the server list keeps hosts and ports only."""
    servers, credentials = split_credentials("nats://svc:p%40ss@nats-0:4222,nats://nats-1:4222")
    assert servers == ["nats://nats-0:4222", "nats://nats-1:4222"]
    assert credentials == {"user": "svc", "password": "p@ss"}


def test_a_lone_user_part_is_a_token() -> None:
    """``nats://TOKEN@host`` authenticates with a token."""
    assert split_credentials("nats://s3cret@127.0.0.1:4222") == (["nats://127.0.0.1:4222"], {"token": "s3cret"})


def test_plain_urls_pass_through() -> None:
    """Without credentials nothing changes, including TLS schemes."""
    assert split_credentials("tls://a:4222, nats://b:4223") == (["tls://a:4222", "nats://b:4223"], {})

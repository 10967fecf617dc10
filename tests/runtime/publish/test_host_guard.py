"""The Host and Origin policy (the middleware itself runs in test_fanout over uvicorn)."""

from __future__ import annotations

import pytest

from fxconnector.runtime.publish.host_guard import HostPolicy, hostname


@pytest.mark.parametrize(
    ("host", "name"),
    [("Example.COM:80", "example.com"), ("[::1]:8088", "::1"), ("::1", "::1"), ("a", "a")],
)
def test_hostname(host: str, name: str) -> None:
    assert hostname(host) == name


def test_loopback_bind_accepts_its_own_and_loopback_names_only() -> None:
    policy = HostPolicy("127.0.0.1", allowed_hosts=("fx.example.com",))
    for ok in ("127.0.0.1:8088", "127.0.0.2", "localhost", "x.localhost:1", "[::1]:1"):
        assert policy.host_ok(ok), ok
    assert policy.host_ok("FX.example.com")
    for bad in ("evil.example", "10.0.0.1", "localhost.evil.example", "fx.example.com.evil"):
        assert not policy.host_ok(bad), bad


def test_wildcard_bind_accepts_ip_literals_but_not_names() -> None:
    wildcard = "0.0.0.0"  # noqa: S104 - a policy's bind address, nothing binds here
    policy = HostPolicy(wildcard)
    assert policy.host_ok("10.0.0.1:8088")
    assert policy.host_ok("[fe80::1]:8088")
    assert not policy.host_ok("evil.example")
    assert HostPolicy(wildcard, allowed_hosts=("*",)).host_ok("evil.example")


def test_origin_must_be_the_same_host_name_or_listed() -> None:
    policy = HostPolicy(allowed_origins=("https://chart.example.com",))
    assert policy.origin_ok("http://127.0.0.1:8088", "127.0.0.1:8088")
    assert policy.origin_ok("https://fx.example.com", "fx.example.com")  # proxy: port dropped
    assert policy.origin_ok("https://chart.example.com/", "fx.example.com")
    assert not policy.origin_ok("https://evil.example", "fx.example.com")
    assert not policy.origin_ok("null", "fx.example.com")
    assert not policy.origin_ok("http://127.0.0.1:8088", None)
    assert HostPolicy(allowed_origins=("*",)).origin_ok("https://evil.example", None)

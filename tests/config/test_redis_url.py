"""`surface.redis_url` is checked by redis-py's rules when the config is loaded."""

from __future__ import annotations

import pytest

from fxconnector.config.redis_url import check_redis_url, describe
from fxconnector.core.errors import ConfigError


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://[::1]:6379/2?socket_timeout=3&health_check_interval=5",
        "rediss://redis.example:6380/2?ssl_cert_reqs=none&ssl_check_hostname=false",
        "unix:///run/redis.sock?db=1",
        "redis://host?max_connections=10&client_name=fx",
    ],
)
def test_urls_redis_py_accepts_pass(url: str) -> None:
    check_redis_url(url)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://[::1", "not a valid URL"),
        ("redis://host:port/0", "not a valid URL"),
        ("redis://host?foo=1", "unknown option 'foo'"),
        ("unix:///run/r.sock?ssl_certfile=x", "unknown option 'ssl_certfile'"),
        ("redis://host?socket_timeout=soon", "socket_timeout"),
        ("http://host", "must start with redis://"),
    ],
)
def test_bad_urls_are_config_errors_naming_the_problem(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_redis_url(url)


def test_the_description_never_shows_more_than_scheme_and_host() -> None:
    assert describe("redis://host:6379/0?client_name=secret-ish") == "(redis://host)"
    assert describe("redis://[::1") == "(unparsable URL)"

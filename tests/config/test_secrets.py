"""Secrets come from a private file or the environment and never print themselves."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from fxconnector.config.secrets import Secret, load_secrets
from fxconnector.core.errors import ConfigError


def secrets_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "secrets.toml"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_file_then_environment(tmp_path: Path) -> None:
    path = secrets_file(tmp_path, 'fxcm_user = "u1"\nfxcm_password = "file-pass"\n')
    secrets = load_secrets(path, {"FXCONNECTOR_FXCM_PASSWORD": "env-pass"})
    assert secrets.fxcm_user is not None
    assert secrets.fxcm_user.reveal() == "u1"
    assert secrets.fxcm_password is not None
    assert secrets.fxcm_password.reveal() == "env-pass"
    assert secrets.oanda_token is None
    assert secrets.known() == ["fxcm_user", "fxcm_password"]


def test_secrets_never_show_in_repr_str_logs_or_errors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secrets = load_secrets(None, {"FXCONNECTOR_OANDA_TOKEN": "tok-123456"})
    logging.getLogger("test").warning("loaded %s / %r", secrets, secrets.oanda_token)
    assert "tok-123456" not in repr(secrets)
    assert "tok-123456" not in str(secrets)
    assert "tok-123456" not in caplog.text
    assert f"{Secret('abc')}" == "Secret('********')"
    with pytest.raises(TypeError):
        __import__("pickle").dumps(Secret("abc"))


@pytest.mark.parametrize(
    ("text", "mode", "message"),
    [
        ('fxcm_user = "u"\n', 0o644, "chmod 600"),
        ('api_key = "k"\n', 0o600, "unknown key 'api_key'"),
        ("fxcm_user = 5\n", 0o600, "non-empty string"),
        ('fxcm_user = "unterminated\n', 0o600, "not valid TOML"),
    ],
)
def test_bad_secrets_files(tmp_path: Path, text: str, mode: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_secrets(secrets_file(tmp_path, text, mode), {})


def test_bad_toml_error_does_not_quote_the_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_secrets(secrets_file(tmp_path, 'fxcm_password = "s3cr3t\n'), {})
    assert "s3cr3t" not in str(info.value)


def test_missing_secrets_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read secrets file"):
        load_secrets(tmp_path / "nope.toml", {})

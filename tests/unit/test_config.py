from __future__ import annotations

from pathlib import Path

import pytest

from loom.config import load_settings
from loom.errors import ConfigError


def test_defaults_are_local_and_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    settings = load_settings()
    assert settings.api_host == "127.0.0.1"
    assert settings.database_url is None
    assert settings.pg_data_dir == (Path(".loom").resolve() / "pg")


def test_database_url_is_read_without_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/db")
    monkeypatch.setenv("LOOM_HOME", "/srv/loom")
    settings = load_settings()
    assert settings.database_url == "postgresql://u@h/db"
    assert settings.pg_data_dir == Path("/srv/loom/pg")


@pytest.mark.parametrize(
    ("name", "value"),
    [("LOOM_API_PORT", "eighty"), ("LOOM_API_PORT", "70000"), ("LOOM_LOG_LEVEL", "LOUD")],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.message.startswith(f"Invalid configuration: {name}:")
    assert "docs/configuration.md" in caught.value.solution


def test_secret_settings_do_not_print(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOM_APP_DB_PASSWORD", "s3cr3t-value")
    settings = load_settings()
    assert "s3cr3t-value" not in repr(settings)
    assert settings.app_db_password is not None
    assert settings.app_db_password.get_secret_value() == "s3cr3t-value"

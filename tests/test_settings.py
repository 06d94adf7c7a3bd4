"""Settings: typed parsing, every problem at once, profiles, secrets."""

from __future__ import annotations

import pytest

from stevedores.settings import (
    CORE_SETTINGS,
    REDACTED,
    Bool,
    ConfigError,
    Csv,
    Float,
    Int,
    Setting,
    Url,
    read_config,
)

CORE = [("core", s) for s in CORE_SETTINGS]


def test_defaults_without_any_environment_run_embedded() -> None:
    config = read_config(CORE, {})
    assert config["DATABASE_URL"].startswith("sqlite:///")
    assert config["PORT"] == 8000
    assert config.profile == "development"
    assert config.sources["SECRET_KEY"] == "generated" and len(config["SECRET_KEY"]) >= 32


def test_every_bad_value_is_reported_at_once_by_name() -> None:
    with pytest.raises(ConfigError) as caught:
        read_config(CORE, {"WEB_WORKERS": "0", "PORT": "http", "DATABASE_URL": "mysql://x/y", "LOG_LEVEL": "LOUD"})
    names = [p.name for p in caught.value.problems]
    assert names == ["DATABASE_URL", "PORT", "WEB_WORKERS", "LOG_LEVEL"]  # in declaration order
    text = str(caught.value)
    assert "WEB_WORKERS" in text and ">= 1" in text
    assert "postgresql://" in text  # the expected form is named


def test_secret_values_never_appear_in_errors() -> None:
    setting = Setting("API_SECRET", Int(), None, "x", secret=True)
    with pytest.raises(ConfigError) as caught:
        read_config([("p", setting)], {"API_SECRET": "hunter2-is-my-password"})
    assert "hunter2" not in str(caught.value) and REDACTED in str(caught.value)


@pytest.mark.parametrize("env", [{"FLASK_ENV": "production"}, {"FLASK_CONFIG": "render"},
                                 {"FLASK_CONFIG": "production"}])
def test_production_requires_a_long_secret_key(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as caught:
        read_config(CORE, {**env, "SECRET_KEY": "short"})
    (problem,) = caught.value.problems
    assert problem.name == "SECRET_KEY" and "at least 32 characters" in problem.message
    assert "short" not in str(caught.value)
    with pytest.raises(ConfigError):
        read_config(CORE, env)  # missing is refused too
    config = read_config(CORE, {**env, "SECRET_KEY": "k" * 32})
    assert config.is_production and config["SECRET_KEY"] == "k" * 32


def test_display_and_rows_redact_secrets() -> None:
    config = read_config(CORE, {"OPS_TOKEN": "operator-token-123", "DATABASE_URL": "postgresql://u:pw@db/x"})
    rows = {r["name"]: r for r in config.rows()}
    assert rows["OPS_TOKEN"]["value"] == REDACTED and rows["DATABASE_URL"]["value"] == REDACTED
    assert rows["OPS_TOKEN"]["source"] == "environment" and rows["PORT"]["source"] == "default"
    assert "operator-token-123" in config.secret_values()


def test_parsers() -> None:
    assert Bool()("Yes") is True and Bool()("off") is False
    assert Csv()(" a, ,b ") == ("a", "b")
    assert Float(min=0)("0.5") == 0.5
    with pytest.raises(ValueError, match="number >= 0"):
        Float(min=0)("-1")
    with pytest.raises(ValueError, match="number"):
        Float()("nan")
    assert Url("redis", "rediss")("rediss://h:6380/0") == "rediss://h:6380/0"
    for bad in ("http://h", "redis://", "redis://h:notaport"):
        with pytest.raises(ValueError, match="redis://"):
            Url("redis")(bad)


def test_empty_value_means_default() -> None:
    assert read_config(CORE, {"PORT": "  "})["PORT"] == 8000


def test_display_of_a_list_of_non_strings() -> None:
    import datetime

    def shifts(raw: str) -> tuple[datetime.time, ...]:
        return tuple(datetime.time(int(h)) for h in raw.split(","))

    config = read_config([("p", Setting("SHIFTS", shifts, (), "shift starts"))], {"SHIFTS": "6,14"})
    assert config.display("SHIFTS") == "06:00:00,14:00:00"

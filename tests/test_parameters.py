"""Safety rule 2: typed, strict parameters. Every hostile value of DESIGN.md is refused by every
text type before anything could run; numbers are range-checked; no extra fields."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from runbook_catalog.parameters import ParameterSpec, build_parameter_model

CANARY = "/tmp/rb-canary"
HOSTILE = [
    f"$(touch {CANARY})",
    f"`touch {CANARY}`",
    f"a; touch {CANARY}",
    f"a && touch {CANARY}",
    f"a | touch {CANARY}",
    f"-oProxyCommand=touch {CANARY}",
    "--help",
    "-rf",
    "acme\n",
    "acme\r",
    "ac\x00me",
    "../../etc/passwd",
    "ａｃｍｅ",  # fullwidth letters
    "acmé",
    "postgresql://evil/db",
    "a b",
    "'; DROP TABLE tenants; --",
    "",
    "x" * 300,
]

SPECS = {
    "identifier": {"type": "identifier", "description": "d"},
    "slug": {"type": "slug", "description": "d"},
    "hostname": {"type": "hostname", "description": "d"},
    "string": {"type": "string", "description": "d", "pattern": r"v[0-9]+\.[0-9]+\.[0-9]+"},
    "choice": {"type": "choice", "description": "d", "choices": ["failover", "restore"]},
    "secret": {"type": "secret", "description": "d"},
}


def model_for(name: str):
    spec = TypeAdapter(ParameterSpec).validate_python(SPECS[name])
    return build_parameter_model("Test", {"value": spec})


@pytest.mark.parametrize("kind", SPECS)
@pytest.mark.parametrize("value", HOSTILE, ids=[repr(v)[:30] for v in HOSTILE])
def test_hostile_text_is_refused(kind, value):
    with pytest.raises(ValidationError):
        model_for(kind)(value=value)


@pytest.mark.parametrize(
    ("kind", "good"),
    [
        ("identifier", "app_db"),
        ("slug", "acme-jewels"),
        ("hostname", "db1.prod.example.com"),
        ("string", "v1.2.3"),
        ("choice", "failover"),
        ("secret", "env:PGPASSWORD"),
    ],
)
def test_good_values_pass(kind, good):
    value = model_for(kind)(value=good).value
    assert (value.get_secret_value() if kind == "secret" else value) == good


def test_path_stays_under_base():
    spec = TypeAdapter(ParameterSpec).validate_python(
        {"type": "path", "description": "d", "base": "/var/backups/postgres"}
    )
    model = build_parameter_model("Test", {"file": spec})
    assert model(file="nightly/app.dump").file == "/var/backups/postgres/nightly/app.dump"
    assert model(file="/var/backups/postgres/a.dump").file == "/var/backups/postgres/a.dump"
    assert model(file="x/../y.dump").file == "/var/backups/postgres/y.dump"
    for bad in ["../../etc/passwd", "/etc/shadow", "a/../../b", "-rf", "a b", "a\n", "ｘ.dump", ""]:
        with pytest.raises(ValidationError):
            model(file=bad)


def test_numbers_are_range_checked_and_typed():
    spec = TypeAdapter(ParameterSpec).validate_python(
        {"type": "integer", "description": "d", "min": 1, "max": 100}
    )
    model = build_parameter_model("Test", {"n": spec})
    assert model(n="42").n == 42  # from a CLI or a label, text is parsed
    for bad in [0, 101, -1, "1e3", "12abc", "１２", "$(id)", 3.5, None, True]:
        with pytest.raises(ValidationError):
            model(n=bad)
    spec = TypeAdapter(ParameterSpec).validate_python(
        {"type": "number", "description": "d", "min": 0, "max": 1}
    )
    model = build_parameter_model("Test", {"x": spec})
    for bad in ["nan", "inf", 2, -0.1]:
        with pytest.raises(ValidationError):
            model(x=bad)


def test_timestamp_needs_timezone():
    spec = TypeAdapter(ParameterSpec).validate_python({"type": "timestamp", "description": "d"})
    model = build_parameter_model("Test", {"at": spec})
    assert model(at="2026-12-04T03:12:00+00:00").at.isoformat() == "2026-12-04T03:12:00+00:00"
    for bad in ["2026-12-04T03:12:00", "yesterday", "$(date)"]:
        with pytest.raises(ValidationError):
            model(at=bad)


def test_unknown_parameters_are_refused():
    model = model_for("slug")
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        model(value="acme", other="x")


def test_secret_never_shows_in_repr():
    model = model_for("secret")
    instance = model(value="env:PGPASSWORD")
    assert "PGPASSWORD" not in repr(instance)
    assert "PGPASSWORD" not in str(instance.model_dump())


def test_defaults_are_validated_like_given_values():
    spec = TypeAdapter(ParameterSpec).validate_python(
        {"type": "path", "description": "d", "base": "/var/backups/postgres", "default": "nightly"}
    )
    model = build_parameter_model("Test", {"dir": spec})
    assert model().dir == "/var/backups/postgres/nightly"


def test_root_base_accepts_any_absolute_path_but_not_options():
    spec = TypeAdapter(ParameterSpec).validate_python(
        {"type": "path", "description": "d", "base": "/"}
    )
    model = build_parameter_model("Test", {"config": spec})
    assert model(config="/etc/nginx/nginx.conf").config == "/etc/nginx/nginx.conf"
    assert model(config="../../etc/x.conf").config == "/etc/x.conf"
    for bad in ["-c/etc/x", "/etc/x;id", "/etc/x\n"]:
        with pytest.raises(ValidationError):
            model(config=bad)
    for bad_base in ["relative/dir", "/var/../etc", "/var//x"]:
        with pytest.raises(ValidationError):
            TypeAdapter(ParameterSpec).validate_python(
                {"type": "path", "description": "d", "base": bad_base}
            )

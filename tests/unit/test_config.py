from pathlib import Path

import pytest

from ringback.config import ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ringback.toml"
    path.write_text(text)
    return path


def test_defaults_without_file() -> None:
    config = load_config(None, env={})
    assert config.sip.port == 5060
    assert config.database.url == ""
    assert config.numbering.country_code == "86"


def test_shipped_example_config_is_valid_and_documents_every_key(repo_root: Path) -> None:
    from dataclasses import fields

    from ringback.config import Config

    example = repo_root / "config" / "ringback.toml"
    load_config(example, env={})
    text = example.read_text()
    for section in fields(Config):
        assert f"[{section.name}]" in text
        for key in fields(getattr(Config(), section.name)):
            assert f"\n{key.name} =" in text or f"\n# {key.name} =" in text, (
                section.name,
                key.name,
            )


def test_file_then_environment_override(tmp_path: Path) -> None:
    path = write(tmp_path, "[sip]\nport = 5070\ntrusted_sources = ['10.0.0.0/8']\n")
    config = load_config(
        path,
        env={
            "RINGBACK_SIP_PORT": "5080",
            "RINGBACK_HTTP_HOST": "::1",
            "RINGBACK_SIP_TRUSTED_SOURCES": "192.0.2.0/24, ::1/128",
            "RINGBACK_ANNOUNCEMENT_STORE_CALLER": "yes",
        },
    )
    assert config.sip.port == 5080
    assert config.http.host == "::1"
    assert config.sip.trusted_sources == ["192.0.2.0/24", "::1/128"]
    assert config.announcement.store_caller is True


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("[sip]\nport = 'abc'\n", {}, "sip.port: must be an integer"),
        ("[sip]\nport = 70000\n", {}, "sip.port: must be a port number"),
        ("", {"RINGBACK_SIP_PORT": "x"}, "sip.port: must be an integer"),
        ("[sip]\nprot = 1\n", {}, "sip.prot: unknown key"),
        ("[sipp]\nport = 1\n", {}, "sipp: unknown section"),
        ("[sip]\ntrusted_sources = ['nonsense']\n", {}, "sip.trusted_sources"),
        ("[database]\nurl = 'mysql://x'\n", {}, "database.url"),
        ("[numbering]\ncountry_code = '086'\n", {}, "numbering.country_code"),
        ("[sip]\nport = \n", {}, "not valid TOML"),
        ("[log]\nlevel = 'loud'\n", {}, "log.level"),
    ],
)
def test_bad_config_names_the_key(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(write(tmp_path, text), env=env)


def test_sip_tls_and_rate_limit_keys(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("x")
    config = load_config(
        write(tmp_path, f"[sip]\ntls_cert = '{cert}'\ntls_key = '{key}'\ntls_port = 5071\n"),
        env={"RINGBACK_SIP_RATE_LIMIT_PER_SOURCE": "50", "RINGBACK_HTTP_RATE_LIMIT_PER_TOKEN": "5"},
    )
    assert (config.sip.tls_port, config.sip.tls_cert) == (5071, str(cert))
    assert config.sip.rate_limit_per_source == 50.0
    assert config.http.rate_limit_per_token == 5.0
    assert config.sip.max_receive_age_ms == 200.0  # shedding on by default
    default = load_config(None, env={})
    assert default.sip.rate_limit_per_source == 0 and default.http.rate_limit_per_token == 0
    assert default.sip.tls_cert == "" and default.sip.tls_port == 5061


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[sip]\ntls_cert = '{cert}'\n", "sip.tls_cert: tls_cert and tls_key must be set together"),
        ("[sip]\ntls_client_ca = '{cert}'\n", "sip.tls_client_ca: needs sip.tls_cert"),
        (
            "[sip]\ntls_cert = '{cert}'\ntls_key = '/nonexistent.pem'\n",
            "sip.tls_key: no such file",
        ),
        (
            "[sip]\ntls_cert = '{cert}'\ntls_key = '{cert}'\ntls_port = 5060\n",
            "sip.tls_port: must differ from sip.port",
        ),
        ("[sip]\nrate_limit_per_source = -1\n", "sip.rate_limit_per_source: must be >= 0"),
        ("[sip]\nmax_receive_age_ms = -5\n", "sip.max_receive_age_ms: must be >= 0"),
        ("[http]\nrate_limit_per_token = -1\n", "http.rate_limit_per_token: must be >= 0"),
    ],
)
def test_sip_tls_and_rate_limit_keys_refused(tmp_path: Path, text: str, message: str) -> None:
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text.replace("{cert}", str(cert))), env={})

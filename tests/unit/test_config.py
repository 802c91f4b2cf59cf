"""Config: TOML files, DMR_* overrides, and errors that name the source, key and rule."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from dmr_appliance import config, config_files
from dmr_appliance.config import HomeConfig, RelayConfig, RouterConfig
from dmr_appliance.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "conf.toml"
    path.write_text(text)
    return path


def test_defaults_without_file() -> None:
    home = config.load(HomeConfig, environ={})
    assert home.bind == "127.0.0.1:8700"
    assert home.tokens.access_ttl == 900
    assert home.tls.ca == Path("/etc/dmr-appliance/pki/ca.pem")


def test_file_values_and_tables(tmp_path: Path) -> None:
    path = write(tmp_path, 'instance = "relay-7"\n[delivery]\nread_timeout = 2\n')
    relay = config.load(RelayConfig, path, environ={})
    assert relay.instance == "relay-7"
    assert relay.delivery.read_timeout == 2.0
    assert isinstance(relay.delivery.read_timeout, float)
    assert relay.delivery.connect_timeout == 3.0


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'bind = "127.0.0.1:9000"\n')
    env = {
        "DMR_BIND": "127.0.0.1:9001",
        "DMR_TOKENS_LEEWAY": "5",
        "DMR_GATE_SOCKET": "/run/h/g.sock",
    }
    home = config.load(HomeConfig, path, environ=env)
    assert home.bind == "127.0.0.1:9001"
    assert home.tokens.leeway == 5
    assert home.gate.socket == Path("/run/h/g.sock")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('bnd = "x"\n', "unknown key 'bnd'"),
        ("[tokens]\naccess_tl = 3\n", "unknown key 'tokens.access_tl'"),
        ('workers = "two"\n', "'workers' must be an integer"),
        ("workers = 0\n", "'workers' = 0: must be greater than 0"),
        ("workers = true\n", "'workers' must be an integer"),
        ('bind = "localhost"\n', "must be HOST:PORT"),
        (
            '[gate]\nsocket = "relative.sock"\n',
            "'gate.socket' = 'relative.sock': must be an absolute path",
        ),
        ('[gate]\nhealth_bind = "nowhere"\n', "'gate.health_bind' = 'nowhere': must be HOST:PORT"),
        ('trusted_proxies = ["127.0.0.1"]\n', "unknown key 'trusted_proxies'"),
        ("tokens = 3\n", "'tokens' must be a table"),
        ('log_level = "loud"\n', "must be one of debug, info"),
        ("workers = \n", "not valid TOML"),
    ],
)
def test_errors_name_file_key_and_rule(tmp_path: Path, text: str, needle: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        config.load(HomeConfig, path, environ={})
    assert needle in caught.value.detail
    assert str(path) in caught.value.detail


def test_environment_errors_name_the_variable() -> None:
    with pytest.raises(ConfigError, match="DMR_WORKERS='many' must be an integer"):
        config.load(HomeConfig, environ={"DMR_WORKERS": "many"})
    with pytest.raises(ConfigError, match=r"DMR_HOME_URL.*https://"):
        config.load(RelayConfig, environ={"DMR_HOME_URL": "http://home"})


@pytest.mark.parametrize(
    "url", ["https://[::1/v1/home", "https://home:0/v1", "https://home:99999/v1"]
)
def test_a_malformed_home_url_is_a_config_error(url: str) -> None:
    # urlsplit raises on a bad IPv6 literal: that must be the usual one-line error.
    with pytest.raises(ConfigError, match=r"DMR_HOME_URL.*https://"):
        config.load(RelayConfig, environ={"DMR_HOME_URL": url})


def test_missing_file_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        config.load(HomeConfig, tmp_path / "absent.toml", environ={})


@pytest.mark.parametrize("cls", [HomeConfig, RelayConfig, RouterConfig])
def test_defaults_file_is_valid_toml_listing_every_key(tmp_path: Path, cls: type) -> None:
    text = config.defaults_toml(cls, "test")
    assert tomllib.loads(text) is not None
    uncommented = "\n".join(
        line[2:] if line.startswith("# ") and " = " in line else line for line in text.splitlines()
    )
    loaded = config_files.build(cls, tomllib.loads(uncommented), source="x", prefix=())
    assert loaded == cls()
    for key, _default, _help in config.describe(cls):
        assert f"# {key.rpartition('.')[2]} = " in text


def test_router_body_limit_comes_from_the_envelope_default() -> None:
    from dmr_appliance.envelope import DEFAULT_MAX_MESSAGE_BYTES

    assert RouterConfig().limits.max_message_bytes == DEFAULT_MAX_MESSAGE_BYTES
    assert RelayConfig().limits.max_message_bytes == DEFAULT_MAX_MESSAGE_BYTES


def test_home_failover_urls_must_be_https():
    with pytest.raises(ConfigError, match=r"'http://r2/v1/home' is not an https:// URL"):
        config.load(
            RelayConfig, environ={"DMR_HOME_FAILOVER": "https://r1/v1/home, http://r2/v1/home"}
        )
    cfg = config.load(
        RelayConfig, environ={"DMR_HOME_FAILOVER": "https://r1/v1/home,https://r2/v1/home"}
    )
    assert cfg.home_failover == ["https://r1/v1/home", "https://r2/v1/home"]


@pytest.mark.parametrize(
    "text, homes",
    [
        ('home = "10.0.0.5:8700"', ["10.0.0.5:8700"]),  # a router.toml written before lists
        ('home = ["10.0.0.5:8700", "[fd00::6]:8700"]', ["10.0.0.5:8700", "[fd00::6]:8700"]),
    ],
)
def test_router_home_is_one_address_or_a_list(tmp_path: Path, text: str, homes) -> None:
    path = tmp_path / "router.toml"
    path.write_text(text + "\n")
    assert config.load(RouterConfig, path, environ={}).home == homes
    env = {"DMR_HOME": "h1:8700, h2:8700"}
    assert config.load(RouterConfig, path, environ=env).home == ["h1:8700", "h2:8700"]


@pytest.mark.parametrize(
    "text, needle",
    [
        ("home = []", r"'home' = \[\]: must list at least one HOST:PORT"),
        ('home = ["h1:8700", "h2"]', r"'home' = .*: 'h2' is not HOST:PORT"),
        ('home = "h1"', r"'home' = \['h1'\]: 'h1' is not HOST:PORT"),
        ("home = 8700", r"'home' must be a string or a list of strings, not 8700"),
    ],
)
def test_a_bad_router_home_is_one_line(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "router.toml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError, match=needle) as caught:
        config.load(RouterConfig, path, environ={})
    assert "\n" not in str(caught.value)

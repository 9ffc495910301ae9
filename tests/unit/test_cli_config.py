"""``flame --config file.toml``: tables become option defaults the way operations.md says."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from flamechat.cli import config_defaults, main
from flamechat.config import DirectorySettings


def test_group_keys_apply_to_every_subcommand_and_subtables_to_one() -> None:
    defaults = config_defaults(
        main,
        {
            "node": {"port": 9999, "relay-after": 5},
            "user": {"data-dir": "/srv/directory", "reset-password": {"password-profile": "minimal"}},
        },
    )
    assert defaults["node"] == {"port": 9999, "relay_after": 5}
    assert defaults["user"]["create"]["data_dir"] == "/srv/directory"
    assert defaults["user"]["list"]["data_dir"] == "/srv/directory"
    assert defaults["user"]["reset-password"] == {"data_dir": "/srv/directory", "password_profile": "minimal"}


def test_a_config_file_sets_a_commands_defaults(tmp_path: Path) -> None:
    config = tmp_path / "flame.toml"
    config.write_text('[user]\ndata-dir = "' + str(tmp_path / "directory") + '"\n')
    result = CliRunner().invoke(main, ["--config", str(config), "user", "list"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "directory" / "directory.sqlite3").exists()  # the table's data-dir was used


def test_a_table_naming_no_command_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "flame.toml"
    config.write_text("[nodes]\nport = 1\n")
    result = CliRunner().invoke(main, ["--config", str(config), "node", "--help"])
    assert result.exit_code == 2
    assert "no such command" in result.output


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[node]\nprot = 5\n", ("[node]", "'prot'")),
        (
            "[user.reset-password]\npassword-profil = 'minimal'\n",
            ("[user.reset-password]", "'password-profil'"),
        ),
        ("[user]\ndata-dri = '/srv'\n", ("[user]", "'data-dri'")),
        ("colour = 'blue'\n", ("top level", "'colour'")),
        ("[node.relay]\nafter = 5\n", ("[node.relay]", "no such command")),
    ],
)
def test_an_unknown_option_in_a_config_file_is_an_error_naming_it_and_its_table(
    tmp_path: Path, text: str, named: tuple[str, str]
) -> None:
    config = tmp_path / "flame.toml"
    config.write_text(text)
    result = CliRunner().invoke(main, ["--config", str(config), "node", "--help"])
    assert result.exit_code == 2, result.output
    for part in named:
        assert part in result.output


def test_a_group_key_is_checked_against_every_subcommand(tmp_path: Path) -> None:
    """[user] password-profile is an option of some user commands (not `list`): accepted, and
    given only to those that have it."""
    defaults = config_defaults(main, {"user": {"password-profile": "minimal"}})
    assert defaults["user"]["create"]["password_profile"] == "minimal"
    assert "password_profile" not in defaults["user"]["list"]


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[DirectorySettings]:
    """`flame directory` with the app factory and the server replaced: records the settings."""
    seen: list[DirectorySettings] = []

    def fake_app(settings: DirectorySettings) -> object:
        seen.append(settings)
        return object()

    monkeypatch.setattr("flamechat.directory.app.create_directory_app", fake_app)
    monkeypatch.setattr("flamechat.cli._serve", lambda app, host, port: None)
    return seen


def test_an_environment_variable_beats_the_config_file_and_a_flag_beats_both(
    tmp_path: Path, served: list[DirectorySettings]
) -> None:
    config = tmp_path / "flame.toml"
    config.write_text("[directory]\nport = 1111\npresence-ttl = 11.0\nlogin-checks-per-minute-per-node = 7\n")
    env = {"FLAME_DIRECTORY_PORT": "2222", "FLAME_DIRECTORY_PRESENCE_TTL": "22.5"}
    runner = CliRunner()

    def run(*args: str, environment: dict[str, str] | None = None) -> DirectorySettings:
        result = runner.invoke(main, ["--config", str(config), "directory", *args], env=environment)
        assert result.exit_code == 0, result.output
        return served.pop()

    from_file = run()
    assert (from_file.port, from_file.presence_ttl, from_file.login_checks_per_minute_per_node) == (
        1111,
        11.0,
        7,
    )
    from_env = run(environment=env)
    assert (from_env.port, from_env.presence_ttl, from_env.login_checks_per_minute_per_node) == (
        2222,
        22.5,
        7,
    )
    from_flag = run("--port", "3333", environment=env)
    assert (from_flag.port, from_flag.presence_ttl) == (3333, 22.5)

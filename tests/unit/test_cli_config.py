"""``flame --config file.toml``: tables become option defaults the way operations.md says."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from flamechat.cli import config_defaults, main


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

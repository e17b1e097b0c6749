"""The documented first run: `--version`, and a missing config file named with what to
create (the Docker image's CMD and HEALTHCHECK read /config/levbot.toml, which the user
creates from an example)."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.entrypoints.cli import app

REPO = Path(__file__).resolve().parents[3]


def test_version_when_asked_then_prints_the_installed_version() -> None:
    result = CliRunner().invoke(app, ["--version"])

    assert result.exit_code == 0, result.output
    assert result.output == f"levbot {version('levbot')}\n"


@pytest.mark.parametrize("command", ["run", "check", "health", "status", "plan", "history"])
def test_command_when_the_config_file_is_missing_then_one_line_says_what_to_create(
    tmp_path: Path, command: str
) -> None:
    missing = tmp_path / "levbot.toml"

    result = CliRunner().invoke(app, [command, "--config", str(missing)])

    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith(f"error: no config at {missing} (file not found): ")
    assert f"cp config/paper.toml {missing}" in lines[0]
    assert not missing.exists()


def test_docker_path_when_the_config_file_is_missing_then_says_to_mount_it() -> None:
    # The image's own path: the file is made on the host and mounted, not made in /config.
    result = CliRunner().invoke(app, ["health", "--config", "/config/levbot.toml"])

    assert result.exit_code == 2, result.output
    (line,) = result.output.splitlines()
    assert "cp config/paper.toml config/levbot.toml" in line
    assert "mount ./config at /config" in line


def test_run_when_the_data_directory_is_not_writable_then_one_line_says_whose_it_must_be(
    tmp_path: Path,
) -> None:
    # /sys refuses new files even to root: the same PermissionError as a host directory
    # mounted at /data that the image's user does not own.
    paper = (REPO / "config" / "paper.toml").read_text()
    config = tmp_path / "levbot.toml"
    config.write_text(paper.replace("sqlite:///data/levbot.sqlite", "sqlite:////sys/levbot.sqlite"))

    # A process of its own: `run` sets up the root log handlers, which must not outlive it.
    result = subprocess.run(
        [sys.executable, "-m", "bot", "run", "--config", str(config)],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = (result.stdout + result.stderr).splitlines()
    assert line.startswith("error: cannot write /sys/levbot.sqlite: Permission denied")
    assert '--user "$(id -u):$(id -g)"' in line

"""The unit files in systemd/: checked by `systemd-analyze verify` and for the settings the daemon relies on."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from edge.daemon import INFERENCE_STALL_S
from tests.conftest import PROJECT_ROOT

UNIT_DIR = PROJECT_ROOT / "systemd"
INSTALLED_BINARY = "/opt/edge/.venv/bin/edge"
UNITS = ["edge.service", "edge@.service", "edge-web.service"]

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze not found; install Debian's systemd package (apt-get install systemd)",
)


def parse_unit(path: Path) -> dict[str, list[str]]:
    """Return every `Section.Key` of a unit file with all its values in order, as systemd reads repeated keys."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        settings.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return settings


def verify(unit_text: str, name: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run `systemd-analyze verify` on a copy of a unit whose commands point at an executable in `tmp_path`.

    verify rejects a unit whose ExecStart binary is missing, and /opt/edge is not installed on a test machine.
    So the copy runs a stand-in script instead, and every other line is checked as written.
    """
    binary = tmp_path / "edge"
    binary.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    binary.chmod(0o755)
    copy = tmp_path / name
    copy.write_text(unit_text.replace(INSTALLED_BINARY, str(binary)), encoding="utf-8")
    # --man=no: the units name no man pages, and the check would look for them on the test machine.
    return subprocess.run(["systemd-analyze", "verify", "--man=no", str(copy)], capture_output=True, text=True,
                          timeout=60)


def problems(result: subprocess.CompletedProcess, name: str) -> list[str]:
    """Return verify's complaints about the unit `name`; verify exits 0 for unknown keys and bad values."""
    stem = name.split("@")[0]
    lines = (result.stdout + result.stderr).splitlines()
    return [line for line in lines if stem in line]


@needs_systemd_analyze
@pytest.mark.parametrize("name", UNITS)
def test_unit_passes_verify(name, tmp_path):
    text = (UNIT_DIR / name).read_text(encoding="utf-8")
    assert INSTALLED_BINARY in text
    result = verify(text, name, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert problems(result, name) == []


@needs_systemd_analyze
def test_verify_reports_bad_line(tmp_path):
    """The check itself can fail: a misspelt key and a bad value are both reported."""
    text = (UNIT_DIR / "edge.service").read_text(encoding="utf-8")
    text = text.replace("ProtectHome=yes", "ProtectHome=yes\nProtectHomes=yes\nRestart=sometimes")
    result = verify(text, "edge.service", tmp_path)
    found = problems(result, "edge.service")
    assert any("Unknown key 'ProtectHomes'" in line for line in found), found
    assert any("sometimes" in line for line in found), found


HARDENING = {
    "Service.ProtectSystem": ["strict"],
    "Service.ProtectHome": ["yes"],
    "Service.PrivateTmp": ["yes"],
    "Service.NoNewPrivileges": ["yes"],
    "Service.CapabilityBoundingSet": [""],
    "Service.SystemCallFilter": ["@system-service"],
    "Service.Restart": ["on-failure"],
}


@pytest.mark.parametrize("name", UNITS)
def test_unit_hardening(name):
    settings = parse_unit(UNIT_DIR / name)
    for key, value in HARDENING.items():
        assert settings.get(key) == value, key
    families = settings["Service.RestrictAddressFamilies"][0].split()
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= set(families)
    assert settings["Service.User"][0] not in ("", "root")
    assert "Service.DynamicUser" not in settings
    assert settings["Service.StateDirectory"]
    assert settings["Service.ReadWritePaths"]


@pytest.mark.parametrize("name", ["edge.service", "edge@.service"])
def test_daemon_unit_notify_and_watchdog(name):
    settings = parse_unit(UNIT_DIR / name)
    assert settings["Service.Type"] == ["notify"]
    watchdog_s = float(settings["Service.WatchdogSec"][0])
    # The daemon stops feeding the watchdog after INFERENCE_STALL_S of stalled inference, so the watchdog must
    # allow more than that, or a short stall would already restart the daemon.
    assert watchdog_s > INFERENCE_STALL_S
    # The GPU device nodes must stay visible.
    assert settings["Service.PrivateDevices"] == ["no"]
    assert "video" in settings["Service.SupplementaryGroups"][0].split()


def test_template_unit_per_instance():
    settings = parse_unit(UNIT_DIR / "edge@.service")
    assert settings["Service.ExecStart"] == [f"{INSTALLED_BINARY} run --config /etc/edge/%i.toml"]
    assert settings["Service.ExecStartPre"] == [f"{INSTALLED_BINARY} check-config /etc/edge/%i.toml"]
    assert settings["Service.StateDirectory"] == ["edge/%i"]
    assert "EDGE_DATA_DIR=/var/lib/edge/%i" in settings["Service.Environment"]
    assert settings["Service.ReadWritePaths"] == ["/var/lib/edge/%i"]


def test_web_unit_command():
    settings = parse_unit(UNIT_DIR / "edge-web.service")
    assert settings["Service.ExecStart"] == [f"{INSTALLED_BINARY} web --config /etc/edge/web.toml"]
    assert settings["Service.PrivateDevices"] == ["yes"]
    assert settings["Service.User"] != parse_unit(UNIT_DIR / "edge.service")["Service.User"]


def test_unit_commands_exist_in_cli():
    """Every subcommand that a unit starts is one that `edge --help` lists."""
    from tests.conftest import edge_command

    help_text = subprocess.run([*edge_command(), "--help"], capture_output=True, text=True, timeout=60).stdout
    for name in UNITS:
        for key in ("Service.ExecStart", "Service.ExecStartPre"):
            for command in parse_unit(UNIT_DIR / name).get(key, []):
                subcommand = command.split()[1]
                assert subcommand in help_text, f"{name}: {key} runs unknown subcommand '{subcommand}'"

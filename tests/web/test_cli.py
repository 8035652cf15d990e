"""`edge web` and `edge check-config` from the command line: bad configs, a port that is already taken, the first-run
admin password, and a web config given to check-config."""

from __future__ import annotations

import contextlib
import socket
import subprocess

from tests.conftest import PROJECT_ROOT, edge_command


def run_web(config_path, timeout_s: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*edge_command(), "web", "--config", str(config_path)], capture_output=True, text=True,
                          timeout=timeout_s)


@contextlib.contextmanager
def taken_port():
    """Yield a port on 127.0.0.1 that a listening socket holds until the block ends."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def test_port_in_use_exits_with_message(tmp_path):
    with taken_port() as port:
        config = tmp_path / "web.toml"
        config.write_text(f'listen_port = {port}\ndata_dir = "data"\n', encoding="utf-8")
        result = run_web(config)
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "listening on" not in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_feed_endpoint_rejected(tmp_path):
    config = tmp_path / "web.toml"
    config.write_text('[[feeds]]\nendpoint = "http://127.0.0.1:5556"\n', encoding="utf-8")
    result = run_web(config)
    assert result.returncode == 2
    assert "feeds[0].endpoint" in result.stderr
    assert "1 error(s) in" in result.stderr


def test_bootstrap_admin_points_to_account_page(tmp_path):
    with taken_port() as port:
        config = tmp_path / "web.toml"
        # The password is printed before the service binds its port, so a taken port ends the run early.
        config.write_text(f'listen_port = {port}\ndata_dir = "data"\nbootstrap_admin = true\n', encoding="utf-8")
        result = run_web(config)
    assert "Created user 'admin' with password: " in result.stdout
    assert "Change it on the My account page (/account) after logging in" in result.stdout
    assert "Users page" not in result.stdout


def check_config(config_path) -> subprocess.CompletedProcess:
    return subprocess.run([*edge_command(), "check-config", str(config_path)], capture_output=True, text=True,
                          timeout=60)


def test_check_config_names_web_config():
    config = PROJECT_ROOT / "config" / "web-demo.toml"
    result = check_config(config)
    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"{config} looks like an `edge web` config (it has listen_host, listen_port, data_dir")
    assert "check-config checks site configs for `edge run`" in last_line
    assert f"`edge web --config {config}` checks a web config when it starts." in last_line


def test_check_config_site_typo_no_web_hint(tmp_path):
    config = tmp_path / "site.toml"
    # A site config with a web field in it is still a site config with an unknown field.
    config.write_text('listen_port = 8080\n[[cameras]]\nid = "gate"\nsource = "rtsp://127.0.0.1/x"\n', encoding="utf-8")
    result = check_config(config)
    assert result.returncode == 1
    assert "listen_port: unknown field" in result.stderr
    assert "looks like an `edge web` config" not in result.stderr

"""`edge run` and `edge check-config` with a broken watchlist database, an empty watchlist and a model file that
is not ONNX: each stops or warns with a message that names the file and the fix, never with a traceback."""

from __future__ import annotations

import subprocess

from tests.conftest import CAR_CLIP, PROJECT_ROOT, edge_command, free_port


def plates_site(tmp_path, watchlist_db: str) -> str:
    config = tmp_path / "site.toml"
    config.write_text(
        "\n".join([
            'box_id = "startup-test"',
            f'watchlist_db = "{watchlist_db}"',
            "[[cameras]]", 'id = "gate"', 'name = "gate"', f'source = "{CAR_CLIP}"', 'pipeline = "plates"',
            "realtime = false",
            "[publisher]", f'endpoint = "tcp://127.0.0.1:{free_port()}"', 'replay_endpoint = ""',
            f'outbox_path = "{tmp_path}/outbox.sqlite"',
            "[metrics]", "enabled = false",
        ]) + "\n",
        encoding="utf-8",
    )
    return str(config)


def run_edge(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*edge_command(), *args], capture_output=True, text=True, timeout=120, env=env)


def test_broken_watchlist_database_stops_start(tmp_path):
    broken = tmp_path / "watchlists.sqlite"
    broken.write_text("exported from a spreadsheet, not a database\n" * 20, encoding="utf-8")
    result = run_edge("run", "--config", plates_site(tmp_path, str(broken)), "--duration", "5")
    assert result.returncode == 2
    assert f"not started: watchlist database {broken} failed: file is not a database" in result.stderr
    assert "check that it is a watchlist database" in result.stderr
    assert "Traceback" not in result.stderr


def test_empty_watchlist_warns(tmp_path):
    result = run_edge("run", "--config", plates_site(tmp_path, str(tmp_path / "new.sqlite")), "--duration", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "WARNING edge.daemon: pipeline plates: the plate watchlist in" in result.stderr
    assert "is empty, so plates are read but no hit.plate will be sent" in result.stderr
    assert "edge watchlist plates import FILE.csv" in result.stderr


def fake_model_dir(tmp_path, monkeypatch):
    """A model folder whose yolox_nano_416.onnx is a text file, such as a saved HTML error page."""
    models = tmp_path / "models" / "coco"
    models.mkdir(parents=True)
    fake = models / "yolox_nano_416.onnx"
    fake.write_text("<html><body>404 Not Found</body></html>\n", encoding="utf-8")
    monkeypatch.setenv("EDGE_MODEL_DIR", str(tmp_path / "models"))
    return fake


def test_model_not_onnx_stops_run(tmp_path, monkeypatch):
    fake = fake_model_dir(tmp_path, monkeypatch)
    result = run_edge("run", "--config", str(PROJECT_ROOT / "config" / "demo.toml"), "--duration", "5")
    assert result.returncode == 2
    assert f"{fake} has sha256" in result.stderr
    assert "the file is corrupt or a different version: delete it and run `edge models fetch yolox_nano_416`" \
        in result.stderr
    assert "Traceback" not in result.stderr


def test_model_not_onnx_fails_check_config(tmp_path, monkeypatch):
    fake = fake_model_dir(tmp_path, monkeypatch)
    result = run_edge("check-config", str(PROJECT_ROOT / "config" / "demo.toml"))
    assert result.returncode != 0
    assert f"{fake} has sha256" in result.stderr + result.stdout
    assert "edge models fetch yolox_nano_416" in result.stderr + result.stdout

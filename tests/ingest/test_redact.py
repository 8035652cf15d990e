"""Credentials in URLs stay out of log lines and messages, whatever characters they contain."""

from __future__ import annotations

import logging

import pytest

from edge.config import ConfigError
from edge.config.loader import load_site
from edge.ingest.redact import RedactingFilter, redact_url, register_secrets


@pytest.mark.parametrize(("text", "expected"), [
    ("from rtsp://admin:Pw 0rdXyz@127.0.0.1:19555/gate, pipeline detect",
     "from rtsp://***@127.0.0.1:19555/gate, pipeline detect"),
    ("(rtsp://admin:pa'ss@h/x); retry", "(rtsp://***@h/x); retry"),
    ('rtsp://admin:pa"ss@h/x', "rtsp://***@h/x"),
    ("rtsp://admin:pa\tss@h/x", "rtsp://***@h/x"),
    ("'rtsp:/admin:Pw0rdXyz@127.0.0.1/x': file not found", "'rtsp:/***@127.0.0.1/x': file not found"),
    ("rtsp://10.0.0.1/a, then rtsp://u:p@10.0.0.2/b", "rtsp://10.0.0.1/a, then rtsp://***@10.0.0.2/b"),
])
def test_userinfo_with_odd_characters_hidden(text, expected):
    assert redact_url(text) == expected


def test_text_after_secret_parameter_kept():
    text = "from rtsp://h/gate?token=TopSecretTok&pwd=Hunter22, pipeline detect (rtsp://h/x?pwd=Hunter22)"

    assert redact_url(text) == "from rtsp://h/gate?token=***&pwd=***, pipeline detect (rtsp://h/x?pwd=***)"


def test_registered_secret_hidden_whole():
    register_secrets("rtsp://cam:Se,cr)et-77@10.0.0.9/live?password=Mi,x)ed-88&channel=1")

    redacted = redact_url("failed (rtsp://10.0.0.9/live?password=Mi,x)ed-88&channel=1), and Se,cr)et-77 alone")

    assert "Mi,x" not in redacted
    assert "ed-88" not in redacted
    assert "Se,cr)et-77" not in redacted
    assert redacted.startswith("failed (rtsp://10.0.0.9/live?password=***&channel=1)")


def test_short_registered_secret_left_to_patterns():
    register_secrets("rtsp://10.0.0.9/live?pwd=7&channel=1")

    assert redact_url("camera c7 restarted 7 times") == "camera c7 restarted 7 times"


def test_filter_scrubs_log_record():
    record = logging.LogRecord("edge", logging.WARNING, __file__, 1, "c1: %s failed", ("rtsp://a:b c@h/x",), None)

    RedactingFilter().filter(record)

    assert record.getMessage() == "c1: rtsp://***@h/x failed"


@pytest.mark.parametrize(("source", "shown"), [
    ("rtsp://admin:Pw 0rdXyz@127.0.0.1:19555/gate", "percent-encode it"),
    ("rtsp://admin:pa'ss@127.0.0.1/gate", "percent-encode it"),
    ("rtsp:/admin:Pw0rdXyz@127.0.0.1/x", "needs two slashes after the scheme"),
    ("rtsp:admin:Pw0rdXyz@127.0.0.1/x", "needs two slashes after the scheme"),
    ("rtsp://admin:Pw0rdXyz@/x", "the URL has no host"),
])
def test_bad_rtsp_url_rejected_without_password(tmp_path, source, shown):
    config = tmp_path / "site.toml"
    config.write_text(f'[[cameras]]\nid = "c1"\nname = "Gate"\nsource = "{source}"\n', encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        load_site(config)

    assert shown in str(caught.value)
    assert "Pw" not in str(caught.value)
    assert "pa'ss" not in str(caught.value)

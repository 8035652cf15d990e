"""Keep RTSP credentials out of logs and messages."""

from __future__ import annotations

import logging
import re

# Matches the user-info part of any URL, such as "admin:secret@" in rtsp://admin:secret@10.1.2.3/live.
# It runs to the last '@' of the URL, because FFmpeg accepts passwords with unescaped '@' and '/' in them.
# A path that contains '@' is hidden too, which costs nothing.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^\s'\"]*@")
# Matches the value of a password or token parameter in a URL's path or query. Many NVRs and cameras take
# credentials there instead, such as rtsp://10.1.2.3/user=admin&password=secret&channel=1&stream=0.sdp
# (XMEye firmware) or ?channel=1&user=admin&password=secret.
_SECRET_PARAMETER = re.compile(
    r"(?P<name>[/?&;](?:password|passwd|pass|pwd|psw|token|access_token)=)[^&;/?#\s'\"]+", re.IGNORECASE)


def redact_url(text: str) -> str:
    """Replace credentials in every URL inside `text` with '***': user info, and password or token parameters."""
    return _SECRET_PARAMETER.sub(r"\g<name>***", _USERINFO.sub(r"\g<scheme>***@", text))


class RedactingFilter(logging.Filter):
    """Scrub URL credentials from every record a handler emits, including FFmpeg messages relayed by PyAV."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_url(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True

"""Keep RTSP credentials out of logs and messages."""

from __future__ import annotations

import logging
import re
import threading

# Matches the user-info part of any URL, such as "admin:secret@" in rtsp://admin:secret@10.1.2.3/live.
# It runs to the last '@' before the next URL or the end of the line, because FFmpeg accepts passwords with
# '@', '/' and spaces in them. It also covers a scheme typed with one slash, such as rtsp:/admin:pw@host.
# Text up to that '@' is hidden even when it is not user info, which costs a little context at most.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*:/+)(?:(?!\b[A-Za-z][A-Za-z0-9+.-]*:/)[^\n])*@")
# A password or token parameter in a URL's path or query. Many NVRs and cameras take credentials there
# instead, such as rtsp://10.1.2.3/user=admin&password=secret&channel=1&stream=0.sdp (XMEye firmware) or
# ?channel=1&user=admin&password=secret.
_SECRET_NAME = r"[/?&;](?:password|passwd|pass|pwd|psw|token|access_token)="
# Matches such a parameter's value in any text. The value stops before ',' and ')', which follow a URL in
# messages; the whole value of a configured source is hidden by register_secrets.
_SECRET_PARAMETER = re.compile(rf"(?P<name>{_SECRET_NAME})[^&;/?#\s'\",)]+", re.IGNORECASE)
# The whole value, up to the next parameter, of a secret parameter in a configured URL.
_SECRET_VALUE = re.compile(rf"{_SECRET_NAME}(?P<value>[^&;/?#]+)", re.IGNORECASE)
# Also without slashes, because a configured source such as rtsp:user:pw@host is a typo, not a file path.
_URL_USERINFO = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/*(?P<userinfo>[^\n]*)@")
# Secrets of the configured camera sources, hidden literally wherever they appear. Shorter ones are left to
# the patterns, because hiding every "1" of a password "1" would garble camera ids and numbers.
MIN_REGISTERED_SECRET_CHARS = 4
# Sorted longest first, so that a user info that contains a registered password is hidden whole. The tuple
# is replaced, never changed, so redact_url reads it without the lock.
_secrets_longest_first: tuple[str, ...] = ()
_secrets_lock = threading.Lock()


def register_secrets(url: str) -> None:
    """Remember the user info and the password or token values of a configured URL, to hide them literally.

    The patterns above guess where a secret ends. A secret that the config names is hidden whole,
    whatever characters it contains.
    """
    found = [match.group("value") for match in _SECRET_VALUE.finditer(url)]
    userinfo = _URL_USERINFO.match(url)
    if userinfo:
        # The password alone too, as FFmpeg or a camera may echo it without the user name.
        found += [userinfo.group("userinfo"), userinfo.group("userinfo").partition(":")[2]]
    global _secrets_longest_first
    with _secrets_lock:
        secrets = set(_secrets_longest_first)
        secrets.update(secret for secret in found if len(secret) >= MIN_REGISTERED_SECRET_CHARS)
        _secrets_longest_first = tuple(sorted(secrets, key=len, reverse=True))


def redact_url(text: str) -> str:
    """Replace credentials in every URL inside `text` with '***': user info, and password or token parameters."""
    for secret in _secrets_longest_first:
        text = text.replace(secret, "***")
    return _SECRET_PARAMETER.sub(r"\g<name>***", _USERINFO.sub(r"\g<scheme>***@", text))


class RedactingFilter(logging.Filter):
    """Scrub URL credentials from every record a handler emits, including FFmpeg messages relayed by PyAV."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_url(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True

"""The outbox on a really full file system: a small tmpfs that the hits themselves fill."""

from __future__ import annotations

import logging
import shutil
import subprocess

import pytest
import zmq

from edge.bus.publisher import OutboxSettings, Publisher
from edge.bus.schema import decode_header
from tests.conftest import free_port

SNAPSHOT = b"\xff\xd8" + b"s" * 30_000
MAX_HITS = 60


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs, mounted for this test only; skipped where mounting is not permitted."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("the mount command is missing, so no small file system can be made to fill")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill ({result.stderr.strip()}); this test needs root or "
                    "CAP_SYS_ADMIN, and the RLIMIT_FSIZE test in test_outbox.py covers the same path")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


def receive_hit(subscriber: zmq.Socket) -> dict:
    assert subscriber.poll(10_000), "hit not received within 10 s"
    return decode_header(subscriber.recv_multipart()[1])


def test_full_tmpfs_hits_still_sent(small_disk, caplog):
    publisher = Publisher(f"tcp://127.0.0.1:{free_port()}", "box-full",
                          outbox=OutboxSettings(small_disk / "outbox.sqlite", 3600, 10**9))
    publisher.start()
    subscriber = zmq.Context.instance().socket(zmq.SUB)
    subscriber.setsockopt(zmq.LINGER, 0)
    subscriber.setsockopt(zmq.SUBSCRIBE, b"hit.")
    subscriber.connect(publisher.endpoint)
    # Handshake: once one hit arrives the subscription is in effect, so no later hit is lost to its joining.
    while not subscriber.poll(50):
        publisher.publish("hit.plate", {"handshake": True})
    while subscriber.poll(200):
        subscriber.recv_multipart()

    received = []
    with caplog.at_level(logging.ERROR, logger="edge.bus.publisher"):
        for index in range(MAX_HITS):
            publisher.publish("hit.plate", {"index": index}, [SNAPSHOT])
            received.append(receive_hit(subscriber))
            if publisher.outbox_errors >= 5:
                break
        errors = publisher.outbox_errors
        counters = publisher.counters()
        lines_while_running = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        publisher.close()
    subscriber.close()
    # The warning that a new outbox restarts the sequence comes before, at WARNING.
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]

    assert errors >= 5, f"the 256 KiB tmpfs did not fill within {MAX_HITS} hits of 30 kB"
    assert [hit["index"] for hit in received] == list(range(len(received)))
    sequences = [hit["sequence"] for hit in received]
    assert sequences == list(range(sequences[0], sequences[0] + len(received)))
    assert counters["outbox_errors"] == errors
    assert len(lines_while_running) == 1, lines_while_running
    assert "1 message(s) could not be stored (last: hit.plate" in lines_while_running[0]
    assert "full" in lines_while_running[0]
    assert len(lines) == 2, lines
    assert f"{errors - 1} more message(s) could not be stored before the stop" in lines[1]

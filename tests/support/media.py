"""Synthetic test clips made with PyAV: every frame carries its index and a picture that can be checked.

Each frame shows a 16-bit barcode of its index in a strip at the top and a smooth pattern below it that
moves from frame to frame, so P-frames depend on motion compensation. A frame decoded from a damaged
reference differs from `pattern_frame(index)` in the pattern area, which `picture_error` measures.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

BARCODE_BITS = 16
BARCODE_HEIGHT_PX = 16


@dataclass(frozen=True)
class ClipSegment:
    """A run of frames encoded at one size; a clip of several segments changes size between them."""

    width: int
    height: int
    frames: int


def pattern_frame(index: int, width: int, height: int) -> np.ndarray:
    """Return the BGR picture of frame `index`: barcode strip on top, moving colour pattern below."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    shift = 3.0 * index
    blue = 128 + 90 * np.sin((x + shift) / 17.0)
    green = 128 + 90 * np.sin((y - 0.5 * shift) / 13.0)
    red = 128 + 90 * np.sin((x + y + 2 * shift) / 23.0)
    frame = np.stack([blue, green, red], axis=-1).clip(0, 255).astype(np.uint8)
    bit_width = width // BARCODE_BITS
    frame[:BARCODE_HEIGHT_PX] = 0
    for bit in range(BARCODE_BITS):
        if index >> bit & 1:
            frame[:BARCODE_HEIGHT_PX, bit * bit_width:(bit + 1) * bit_width] = 255
    return frame


def read_index(frame_bgr: np.ndarray) -> int:
    """Read the frame index from the barcode strip of a decoded frame."""
    bit_width = frame_bgr.shape[1] // BARCODE_BITS
    row = frame_bgr[4:BARCODE_HEIGHT_PX - 4].astype(np.float32).mean(axis=(0, 2))
    index = 0
    for bit in range(BARCODE_BITS):
        # The middle half of each bar avoids the blur that chroma subsampling leaves at bar edges.
        start = bit * bit_width + bit_width // 4
        if row[start:start + bit_width // 2].mean() > 128:
            index |= 1 << bit
    return index


def picture_error(frame_bgr: np.ndarray, index: int) -> float:
    """Return the mean absolute difference between a decoded frame's pattern area and the frame it should be."""
    height, width = frame_bgr.shape[:2]
    expected = pattern_frame(index, width, height)
    area = slice(BARCODE_HEIGHT_PX + 2, None)
    return float(np.abs(frame_bgr[area].astype(np.int16) - expected[area].astype(np.int16)).mean())


def encode_clip(path: Path, segments: list[ClipSegment], *, codec: str = "libx264", pix_fmt: str = "yuv420p",
                fps: int = 25, gop: int = 25, first_index: int = 0) -> Path:
    """Encode pattern frames into `path`; the container follows the suffix (.mp4, .ts, .mkv).

    Every segment gets its own encoder, so a clip of two segments of different sizes is one video stream
    whose size changes where the second segment starts, announced by new in-band parameter sets. Only
    MPEG-TS and raw streams carry such a change; MP4 keeps the first segment's parameter sets only.
    """
    options = {"g": str(gop), "keyint_min": str(gop), "bf": "0"}
    if codec == "libx264":
        options.update({"preset": "veryfast", "crf": "16", "sc_threshold": "0", "x264-params": "repeat-headers=1"})
    elif codec == "libx265":
        options.update({"preset": "veryfast", "crf": "18",
                        "x265-params": f"repeat-headers=1:scenecut=0:keyint={gop}:min-keyint={gop}:log-level=error"})
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = segments[0].width, segments[0].height, pix_fmt
        index = first_index
        for number, segment in enumerate(segments):
            encoder = stream.codec_context if number == 0 else _standalone_encoder(codec, segment, pix_fmt, fps,
                                                                                   options)
            for _ in range(segment.frames):
                picture = av.VideoFrame.from_ndarray(pattern_frame(index, segment.width, segment.height),
                                                     format="bgr24").reformat(format=pix_fmt)
                picture.pts = index - first_index
                picture.time_base = Fraction(1, fps)
                for packet in encoder.encode(picture):
                    _mux(container, stream, packet, fps)
                index += 1
            for packet in encoder.encode(None):
                _mux(container, stream, packet, fps)
    return path


def _standalone_encoder(codec: str, segment: ClipSegment, pix_fmt: str, fps: int,
                        options: dict[str, str]) -> av.video.codeccontext.VideoCodecContext:
    encoder = av.CodecContext.create(codec, "w")
    encoder.width, encoder.height, encoder.pix_fmt = segment.width, segment.height, pix_fmt
    encoder.time_base = Fraction(1, fps)
    encoder.framerate = Fraction(fps, 1)
    encoder.options = options
    return encoder


def _mux(container: av.container.OutputContainer, stream: av.video.stream.VideoStream, packet: av.Packet,
         fps: int) -> None:
    packet.stream = stream
    if packet.time_base is None:
        packet.time_base = Fraction(1, fps)
    container.mux(packet)

"""Make an H.264 video from still photos: each photo is one passing vehicle or person, with empty frames between.

Each photo is shown for `seconds_per_image`, slowly zooming in so consecutive frames differ like video,
then `gap_frames` black frames end every track before the next vehicle appears.
"""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np

WIDTH, HEIGHT = 1280, 720


def _fit(image_bgr: np.ndarray, zoom: float) -> np.ndarray:
    """Scale the photo to fit the frame, zoomed about its centre by `zoom`, on a black canvas."""
    height, width = image_bgr.shape[:2]
    scale = min(WIDTH / width, HEIGHT / height) * zoom
    resized = cv2.resize(image_bgr, (int(width * scale), int(height * scale)), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    left, top = (WIDTH - resized.shape[1]) // 2, (HEIGHT - resized.shape[0]) // 2
    source_left, source_top = max(0, -left), max(0, -top)
    target_left, target_top = max(0, left), max(0, top)
    visible_w = min(resized.shape[1] - source_left, WIDTH - target_left)
    visible_h = min(resized.shape[0] - source_top, HEIGHT - target_top)
    canvas[target_top:target_top + visible_h, target_left:target_left + visible_w] = \
        resized[source_top:source_top + visible_h, source_left:source_left + visible_w]
    return canvas


def make_photo_video(photos: list[Path], out_path: Path, fps: int = 10, seconds_per_image: float = 3.0,
                     gap_frames: int = 15) -> Path:
    frames_per_image = int(fps * seconds_per_image)
    with av.open(str(out_path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        # A keyframe every second lets an RTSP client that joins mid-clip start decoding quickly.
        stream.options = {"g": str(fps), "preset": "veryfast", "crf": "20"}

        def write(frame_bgr: np.ndarray) -> None:
            frame = av.VideoFrame.from_ndarray(frame_bgr, format="bgr24")
            for packet in stream.encode(frame):
                container.mux(packet)

        black = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
        for photo in photos:
            image = cv2.imread(str(photo))
            if image is None:
                raise ValueError(f"cannot read {photo} as an image")
            for index in range(frames_per_image):
                write(_fit(image, 1.0 + 0.1 * index / frames_per_image))
            for _ in range(gap_frames):
                write(black)
        for packet in stream.encode():
            container.mux(packet)
    return out_path

"""Demo media: a plate-camera clip made from still photos, so `make run` shows plate hits without a camera.

`make_photo_video` shows each photo as one passing vehicle or person, with empty frames between, so each
photo becomes one track. Tests use it too. `python -m edge.demo OUT_DIR` writes the demo's clip from the
labelled plate photos in EDGE_IMAGE_DIR (default: ../shared/assets/images beside the project).
"""

from __future__ import annotations

import argparse
import os
import sys
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


PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEMO_CLIP = "plates-demo.mp4"
# Plates in the clip, in order; config/demo-watchlist.csv lists the first one, so the demo shows hits.
DEMO_PHOTOS = ("wq_single_yellow.jpg", "wq_double_yellow.jpg", "wq_single_green.jpg", "wq_police.jpg")


def image_dir() -> Path:
    return Path(os.environ.get("EDGE_IMAGE_DIR", PROJECT_ROOT.parent / "shared" / "assets" / "images"))


def build_demo_clip(out_dir: Path) -> Path:
    """Write the demo plate clip into `out_dir` unless it is already there; return its path."""
    out_path = out_dir / DEMO_CLIP
    if out_path.exists():
        return out_path
    photos = [image_dir() / "plates" / "misc" / name for name in DEMO_PHOTOS]
    missing = [str(photo) for photo in photos if not photo.is_file()]
    if missing:
        raise FileNotFoundError(f"demo photos not found: {', '.join(missing)}; set EDGE_IMAGE_DIR to the folder "
                                "that holds plates/misc")
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_suffix(".partial.mp4")
    make_photo_video(photos, partial, seconds_per_image=4.0)
    # Renamed only when complete, so an interrupted run never leaves a truncated clip that looks finished.
    partial.replace(out_path)
    return out_path


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m edge.demo",
        description=f"Write the demo plate-camera clip {DEMO_CLIP} into OUT_DIR, made from the labelled plate "
        "photos in $EDGE_IMAGE_DIR/plates/misc. EDGE_IMAGE_DIR defaults to ../shared/assets/images beside the "
        "project. An existing clip is kept.",
    )
    parser.add_argument("out_dir", type=Path, metavar="OUT_DIR",
                        help="folder for the clip, created when missing, such as build/demo")
    args = parser.parse_args(argv)
    # A mistyped option after `--` would otherwise become a folder named like it in the working directory.
    if str(args.out_dir).startswith("-"):
        parser.error(f"OUT_DIR '{args.out_dir}' starts with '-', so it looks like an option; "
                     f"write ./{args.out_dir} for a folder of that name")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        path = build_demo_clip(args.out_dir)
    except (FileNotFoundError, ValueError) as error:
        print(f"cannot build the demo clip: {error}", file=sys.stderr)
        return 1
    print(f"demo clip: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

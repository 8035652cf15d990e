"""The photo-to-video helper lives in the package, because the demo uses it too."""

from edge.demo import make_photo_video

__all__ = ["make_photo_video"]

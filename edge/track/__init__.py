"""Per-camera object tracking: stable track ids across frames."""

"""Inference runtime: ONNX Runtime sessions, the detector and the cross-camera batch scheduler."""

"""Model loading: the batch probe on graphs whose every input dimension is free."""

from __future__ import annotations

import logging
import shutil

import onnx

from edge.runtime import session as session_module
from edge.runtime.session import load_model
from tests.conftest import MODEL_DIR


def fully_dynamic_copy(tmp_path):
    """Copy yolox_nano_416 with batch, height and width all free, as `export(dynamic=True)` writes graphs."""
    model = onnx.load(str(MODEL_DIR / "coco" / "yolox_nano_416.onnx"))
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        dims[0].dim_param, dims[2].dim_param, dims[3].dim_param = "batch", "height", "width"
    for value in model.graph.output:
        dims = value.type.tensor_type.shape.dim
        dims[0].dim_param, dims[1].dim_param = "batch", "boxes"
    del model.graph.value_info[:]
    path = tmp_path / "dynamic.onnx"
    onnx.save(model, str(path))
    return path


def test_fully_dynamic_graph_runs_batches(tmp_path):
    assert load_model(fully_dynamic_copy(tmp_path), ["cpu"]).dynamic_batch


def test_tiny_probe_would_miss_batching(tmp_path, monkeypatch, caplog):
    """A 1x1 probe is rejected by the detector's strides, which must be reported, not silent."""
    monkeypatch.setattr(session_module, "PROBE_SIDE", 1)
    loaded = load_model(fully_dynamic_copy(tmp_path), ["cpu"])
    assert not loaded.dynamic_batch
    assert "rejects a batch of two" in caplog.text


def test_provider_logged_once_per_model(tmp_path, caplog):
    """Each inference worker loads its own session, and a 2-worker daemon must not repeat the provider line."""
    path = tmp_path / "yolox_nano_416.onnx"
    shutil.copy(MODEL_DIR / "coco" / "yolox_nano_416.onnx", path)
    caplog.set_level(logging.DEBUG, logger="edge.runtime.session")

    load_model(path, ["cpu"])
    load_model(path, ["cpu"])

    provider_records = [record for record in caplog.records
                        if "using CPUExecutionProvider" in record.getMessage()]
    assert [record.levelno for record in provider_records] == [logging.INFO, logging.DEBUG]

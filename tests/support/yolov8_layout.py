"""Build a YOLOv8-layout model from the real YOLOX-Nano weights, to test the yolov8 output family.

No YOLOv8 weights ship with the test assets. This graph wraps YOLOX-Nano in the input and output of a
YOLOv8 export: it takes RGB scaled to 0..1 and returns [N, 4 + 80, anchors] with centre-size boxes in
input pixels and class scores. The yolov8 decoder therefore runs on real detections.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edge.core.decode import yolox_grid


def _constant(name: str, array: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(array, name))


def build_yolov8_layout_model(yolox_path: Path, out_path: Path, input_size: int = 416) -> Path:
    model = onnx.load(str(yolox_path))
    graph = model.graph
    old_input = graph.input[0].name
    old_output = graph.output[0].name
    grid, strides = yolox_grid(input_size, input_size)

    prologue = [
        _constant("v8_scale", np.array(255.0, dtype=np.float32)),
        helper.make_node("Mul", ["pixels_rgb01", "v8_scale"], ["v8_rgb255"]),
        _constant("v8_bgr_order", np.array([2, 1, 0], dtype=np.int64)),
        helper.make_node("Gather", ["v8_rgb255", "v8_bgr_order"], [old_input], axis=1),
    ]

    def slice_last(name: str, start: int, end: int) -> list[onnx.NodeProto]:
        return [
            _constant(f"{name}_starts", np.array([start], dtype=np.int64)),
            _constant(f"{name}_ends", np.array([end], dtype=np.int64)),
            _constant(f"{name}_axes", np.array([2], dtype=np.int64)),
            helper.make_node("Slice", [old_output, f"{name}_starts", f"{name}_ends", f"{name}_axes"], [name]),
        ]

    epilogue = [
        *slice_last("v8_xy", 0, 2),
        *slice_last("v8_wh", 2, 4),
        *slice_last("v8_obj", 4, 5),
        *slice_last("v8_cls", 5, 85),
        _constant("v8_grid", grid[None]),
        _constant("v8_strides", strides[None]),
        helper.make_node("Add", ["v8_xy", "v8_grid"], ["v8_xy_cells"]),
        helper.make_node("Mul", ["v8_xy_cells", "v8_strides"], ["v8_centres"]),
        helper.make_node("Exp", ["v8_wh"], ["v8_wh_cells"]),
        helper.make_node("Mul", ["v8_wh_cells", "v8_strides"], ["v8_sizes"]),
        helper.make_node("Mul", ["v8_obj", "v8_cls"], ["v8_scores"]),
        helper.make_node("Concat", ["v8_centres", "v8_sizes", "v8_scores"], ["v8_rows"], axis=2),
        helper.make_node("Transpose", ["v8_rows"], ["output0"], perm=[0, 2, 1]),
    ]

    nodes = [*prologue, *graph.node, *epilogue]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info("pixels_rgb01", TensorProto.FLOAT,
                                                     ["batch", 3, input_size, input_size]))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 84, len(grid)]))
    del graph.value_info[:]
    onnx.checker.check_model(model)
    onnx.save(model, str(out_path))
    return out_path

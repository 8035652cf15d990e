"""Inference layout of a pipeline: workers, threads per worker and frames per batch, per device class.

A setting given in the config wins. One left unset takes the default of the device class that the
provider list selects: "cpu" when the CPU provider is the first available one, "gpu" for CUDA and
TensorRT. The CPU values were chosen with `edge bench pipeline`; benchmarks/README.md has the run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from edge.config.pipeline import DetectStage
from edge.config.site import RuntimeConfig
from edge.runtime.session import PROVIDERS, choose_providers

DeviceClass = Literal["cpu", "gpu"]


@dataclass(frozen=True)
class DeviceDefaults:
    inference_workers: int
    batch_size: int  # used when the pipeline file leaves detect.batch_size unset


DEVICE_DEFAULTS: dict[DeviceClass, DeviceDefaults] = {
    # Measured on a 2-core VM: 2 single-threaded workers gave 1.08 to 1.35 times the frames/s of 1
    # worker with 2 threads. With 2 workers, batch 1 gave 1.08 times the frames/s of batch 4 and 1.18
    # times that of batch 8, at a third of the latency (`edge bench pipeline` and `edge bench
    # latency`, benchmarks/README.md).
    # NOTE: only 2 cores were measured. On more cores the workers get cores / 2 threads each, untested.
    "cpu": DeviceDefaults(inference_workers=2, batch_size=1),
    # NOTE: untested assumption, as no GPU box was measured. A GPU runs one batch at a time, so a second
    # worker only adds a model copy, while larger batches use the GPU better. Measure with
    # `edge bench pipeline --json` on the box before trusting these values.
    "gpu": DeviceDefaults(inference_workers=1, batch_size=8),
}


@dataclass(frozen=True)
class InferenceLayout:
    device_class: DeviceClass
    inference_workers: int
    intra_op_threads: int  # 0 lets ONNX Runtime choose
    batch_size: int


def usable_cores() -> int:
    """Return the cores this process may run on, which a container or taskset may limit below the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def device_class(providers: list[str]) -> DeviceClass:
    """Return the class of the provider that ONNX Runtime will try first among `providers`."""
    return "cpu" if choose_providers(providers)[0] == PROVIDERS["cpu"] else "gpu"


def resolve_layout(runtime: RuntimeConfig, stage: DetectStage, cores: int | None = None) -> InferenceLayout:
    """Fill the settings left unset with the defaults of the device class.

    Raises SessionError when none of the requested providers is available.
    """
    kind = device_class(list(runtime.providers))
    defaults = DEVICE_DEFAULTS[kind]
    workers = runtime.inference_workers or defaults.inference_workers
    threads = runtime.intra_op_threads
    if threads == 0 and kind == "cpu":
        # The workers together use each core once, because more threads than cores only compete.
        threads = max(1, (cores or usable_cores()) // workers)
    batch_size = stage.batch_size if "batch_size" in stage.model_fields_set else defaults.batch_size
    return InferenceLayout(kind, workers, threads, batch_size)

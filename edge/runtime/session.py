"""Create ONNX Runtime sessions from a provider preference list, making fixed batch sizes dynamic."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from edge.metrics import INFERENCE_STATS

log = logging.getLogger(__name__)

PROVIDERS = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
BATCH_DIM_NAME = "batch"

# The facts about a model that load_model has logged at INFO or WARNING, such as its provider. Every
# inference worker loads its own session, so the later loads of the same model log them at DEBUG.
_logged_facts: set[tuple] = set()
_logged_facts_lock = threading.Lock()


class SessionError(Exception):
    """An inference session could not be created."""


class TimedSession:
    """An InferenceSession whose run() calls are recorded in the per-model histograms of the metrics endpoint."""

    def __init__(self, session: ort.InferenceSession, model_name: str):
        self._session = session
        self.model_name = model_name

    def run(self, output_names, input_feed: dict[str, np.ndarray], run_options=None) -> list:
        started = time.perf_counter()
        outputs = self._session.run(output_names, input_feed, run_options)
        first_input = next(iter(input_feed.values()), None)
        batch_size = first_input.shape[0] if first_input is not None and first_input.ndim else 1
        INFERENCE_STATS.record(self.model_name, time.perf_counter() - started, batch_size)
        return outputs

    def __getattr__(self, name: str):
        return getattr(self._session, name)


@dataclass
class LoadedModel:
    session: TimedSession
    provider: str
    dynamic_batch: bool  # False when the graph only accepts batch size 1


def _with_symbolic_batch(model: onnx.ModelProto) -> bool:
    """Rename a fixed leading dimension of every graph input and output to a symbolic one; return True if changed."""
    changed = False
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value"):
            dims[0].dim_param = BATCH_DIM_NAME
            changed = True
    if changed:
        # Inferred intermediate shapes still carry the old batch size, so drop them.
        del model.graph.value_info[:]
    return changed


# Size given to free spatial dimensions in the batch probe. Detectors with strides up to 32 reject
# a 1x1 input, so a fully dynamic graph would look fixed-batch and silently run one frame per call.
PROBE_SIDE = 64


def _accepts_batch_of_two(session: ort.InferenceSession) -> bool:
    feeds = {}
    for value in session.get_inputs():
        shape = [2, *(dim if isinstance(dim, int) else PROBE_SIDE for dim in value.shape[1:])]
        feeds[value.name] = np.zeros(shape, dtype=np.float32)
    quiet = ort.RunOptions()
    quiet.log_severity_level = 4  # the expected failure of a fixed-batch graph is not an error worth logging
    try:
        outputs = session.run(None, feeds, quiet)
    except Exception as error:  # noqa: BLE001 - ORT raises several unrelated types for shape mismatches.
        log.debug("batch of two rejected: %s", error)
        return False
    # Some graphs run a batch of two without error but fold it into one result (a Reshape to (1, -1, C)).
    return all(output.ndim > 0 and output.shape[0] == 2 for output in outputs)


def choose_providers(requested: list[str]) -> list[str]:
    available = set(ort.get_available_providers())
    chosen = [PROVIDERS[name] for name in requested if PROVIDERS[name] in available]
    if not chosen:
        raise SessionError(
            f"none of the requested providers {requested} is available in this onnxruntime build "
            f"(available: {sorted(available)}); add 'cpu' to runtime.providers or install onnxruntime-gpu"
        )
    return chosen


def _first_time_level(level: int, *fact: object) -> int:
    """Return `level` the first time this process logs `fact`, and DEBUG after that."""
    with _logged_facts_lock:
        if fact in _logged_facts:
            return logging.DEBUG
        _logged_facts.add(fact)
        return level


def load_model(path: Path, requested_providers: list[str], intra_op_threads: int = 0) -> LoadedModel:
    """Open `path` with the first usable provider; a fixed batch size is made dynamic where the graph allows it."""
    try:
        model = onnx.load(str(path))
    except Exception as error:  # noqa: BLE001 - onnx raises DecodeError, OSError and others.
        raise SessionError(f"{path} is not a readable ONNX model: {error}; replace it with the ONNX file of "
                           "its models/manifest.toml entry (`edge models fetch NAME`)") from error

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    # Warnings only: some exported graphs list their weights as inputs, and ORT logs one line per weight.
    options.log_severity_level = 3
    providers = choose_providers(requested_providers)
    made_symbolic = _with_symbolic_batch(model)
    session = ort.InferenceSession(model.SerializeToString(), options, providers=providers)
    dynamic = _accepts_batch_of_two(session)
    if made_symbolic and not dynamic:
        log.log(_first_time_level(logging.WARNING, "fixed batch", str(path)),
                "%s: batch size is fixed inside the graph; frames run one at a time", path.name)
        session = ort.InferenceSession(str(path), options, providers=providers)
    elif not dynamic:
        log.log(_first_time_level(logging.WARNING, "rejects batch", str(path)),
                "%s: the graph declares a free batch size but rejects a batch of two; frames run one at a time",
                path.name)

    used = session.get_providers()[0]
    # Providers listed before the one in use were unavailable or failed to initialise.
    used_index = next((i for i, name in enumerate(requested_providers) if PROVIDERS[name] == used),
                      len(requested_providers))
    skipped = requested_providers[:used_index]
    log.log(_first_time_level(logging.INFO, "provider", str(path), used, tuple(requested_providers)),
            "%s: using %s (requested %s; unavailable: %s)",
            path.name, used, ", ".join(requested_providers), ", ".join(skipped) or "none")
    return LoadedModel(session=TimedSession(session, path.stem), provider=used, dynamic_batch=dynamic)

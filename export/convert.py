"""Keras -> TFLite conversion: SavedModel + TFLiteConverter, one function per variant.

`from_concrete_functions` would drop the weights, so the model is exported to a SavedModel
once (`model.export(..., format="tf_saved_model")`) and every variant converts from it.
"""

from __future__ import annotations

import contextlib
import csv
import io
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import tensorflow as tf

from unet.runtime.errors import UserError
from unet.runtime.variants import QUANTISED_VARIANTS, VARIANTS

RepresentativeData = Callable[[], Iterator[list[np.ndarray]]]


def export_saved_model(model, directory: Path) -> Path:
    """Write a SavedModel with a fixed batch-1 signature (what an edge runtime wants)."""
    input_shape = tuple(model.input_shape[1:])
    if None in input_shape:
        raise UserError(
            f"model input shape {model.input_shape} has unknown sizes; give --input-size "
            "so the TFLite model gets a fixed shape"
        )
    signature = [tf.TensorSpec((1, *input_shape), tf.float32, name="image")]
    model.export(str(directory), format="tf_saved_model", input_signature=signature, verbose=False)
    return directory


def _converter(saved_model: Path, variant: str, representative: RepresentativeData | None):
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    if variant == "float32":
        return converter
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif variant in QUANTISED_VARIANTS:
        if representative is None:
            raise UserError(f"{variant} needs calibration images (--calib DIR)")
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if variant != "int8-float-io":
            io_type = tf.int8 if variant == "int8" else tf.uint8
            converter.inference_input_type = io_type
            converter.inference_output_type = io_type
    elif variant != "dynamic":
        raise UserError(f"unknown variant {variant!r}; choose from {VARIANTS}")
    return converter


def convert_variant(
    saved_model: Path,
    variant: str,
    representative: RepresentativeData | None = None,
    float_layers: tuple[str, ...] = (),
    float_tensors: tuple[str, ...] = (),
) -> bytes:
    """Bytes of one `.tflite` variant.

    float_layers: Keras layer names whose tensors stay in float32 (quantised variants only).
    float_tensors: exact tensor names (as the QuantizationDebugger names them) kept in float32.
    """
    if variant == "dynamic":
        warnings.warn(
            "dynamic-range quantisation is usually slower than float32 on CPU and does not "
            "load on tflite-runtime 2.14", stacklevel=2,
        )
    if variant in QUANTISED_VARIANTS and (float_layers or float_tensors):
        tensors = list(float_tensors)
        if float_layers:
            tensors += tensors_of_layers(layer_statistics(saved_model, representative), float_layers)
        return quantised_keeping_float(saved_model, variant, representative, sorted(set(tensors)))
    return _converter(saved_model, variant, representative).convert()


def _debugger(saved_model: Path, representative: RepresentativeData, denylisted: list[str] | None = None):
    converter = _converter(saved_model, "dynamic", None)
    converter.representative_dataset = representative
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=denylisted) \
        if denylisted else None
    return tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=representative, debug_options=options
    )


@contextlib.contextmanager
def _quiet_debugger_interpreter():
    """Hide TF's tf.lite.Interpreter deprecation warning, raised by the debugger's own interpreters.

    Everything the project runs goes through LiteRT; the warning's advice is for TF's debugger.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"\s*Warning: tf\.lite\.Interpreter is deprecated")
        yield


def layer_statistics(saved_model: Path, representative: RepresentativeData) -> list[dict]:
    """Per-tensor quantisation error from TFLite's QuantizationDebugger, worst first.

    Ranked by RMSE divided by the quantisation scale: how many quantisation steps a layer's
    output is off on average, comparable across layers of different ranges. `position` is the
    tensor's place in the model's execution order.
    """
    with _quiet_debugger_interpreter():
        debugger = _debugger(saved_model, representative)
        debugger.run()
    buffer = io.StringIO()
    debugger.layer_statistics_dump(buffer)
    rows = []
    for position, row in enumerate(csv.DictReader(io.StringIO(buffer.getvalue()))):
        scale = float(row["scale"]) if row.get("scale") else 0.0
        mse = float(row["mean_squared_error"])
        rows.append({
            "op": row["op_name"],
            "tensor": row["tensor_name"],
            "rmse": mse**0.5,
            "rmse_over_scale": (mse**0.5) / scale if scale > 0 else 0.0,
            "max_abs_error": float(row["max_abs_error"]),
            "position": position,
        })
    return sorted(rows, key=lambda r: r["rmse_over_scale"], reverse=True)


def tensors_of_layers(statistics: list[dict], float_layers: tuple[str, ...]) -> list[str]:
    """The debugger's tensor names that belong to the named Keras layers."""
    tensors = sorted({
        row["tensor"] for row in statistics
        if any(f"/{name}" in row["tensor"] or row["tensor"].startswith(name) for name in float_layers)
    })
    if not tensors:
        names = sorted({row["tensor"].split(";")[0] for row in statistics})[:20]
        raise UserError(f"--float-layers {','.join(float_layers)} matched no quantised tensor; "
                        f"tensors look like: {names}")
    return tensors


def quantised_keeping_float(
    saved_model: Path, variant: str, representative: RepresentativeData, tensors: list[str]
) -> bytes:
    """Full-integer model except the named tensors, which stay in float (debugger denylist)."""
    warnings.warn(
        f"keeping {len(tensors)} tensors in float: the {variant} model keeps float32 input "
        "and output (TFLite's selective quantisation does not quantise the model's I/O)",
        stacklevel=2,
    )
    with _quiet_debugger_interpreter():
        return _debugger(saved_model, representative, tensors).get_nondebug_quantized_model()

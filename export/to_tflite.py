"""Export trained Keras U-Nets to float32, float16 and int8 TFLite, with a quantisation report.

    python export/to_tflite.py                         # every shipped model under assets/
    python export/to_tflite.py --model runs/x/model.keras --calib my-data --eval my-data

Beside each model it writes `NAME.<variant>.tflite`, updates `NAME.json` (the metadata,
with each variant's input/output scale and zero-point read back from the converted file),
and writes `NAME.export.json` and `NAME.export.md`: size, accuracy, agreement with the
Keras model, latency and the worst-quantised layers of every variant. It exits non-zero
when int8 loses more mean IoU than --max-iou-drop, after writing the report.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from unet.atomic import atomic_write_bytes  # noqa: E402
from unet.cli import raise_if_terminated, run_cli  # noqa: E402
from unet.evaluate import (  # noqa: E402
    LabelledSet,
    compare_segmentations,
    labelled_folder,
    recorded_split,
    score_segmentations,
    segment_all,
)
from unet.imageio import IMAGE_SUFFIXES, read_image  # noqa: E402
from unet.metadata import (  # noqa: E402
    MetadataError,
    ModelMetadata,
    metadata_path_for,
    save_metadata,
)
from unet.preprocess import preprocess  # noqa: E402
from unet.runtime import KerasBackend, LiteRTBackend, Segmenter, percentiles_ms  # noqa: E402

ASSETS = REPO / "assets"
QUANTISED = ("int8", "uint8")


@dataclass
class ExportOptions:
    variants: tuple[str, ...]
    calib: Path | None
    calib_n: int
    eval_data: Path | None
    eval_n: int
    max_iou_drop: float
    float_layers: tuple[str, ...]
    latency_runs: int
    worst_layers: int
    command: str = "python export/to_tflite.py"


def model_metadata(model_path: Path, model) -> tuple[ModelMetadata, bool]:
    """The sidecar metadata, or metadata inferred from a foreign model's shapes (and False)."""
    from unet.metadata import load_metadata

    sidecar = metadata_path_for(model_path)
    if sidecar.is_file():
        return load_metadata(sidecar), True
    height, width, channels = model.input_shape[1:]
    if height is None or width is None:
        raise MetadataError(f"{model_path} has no metadata and no fixed input size {model.input_shape}")
    outputs = model.output_shape[-1]
    class_names = ["background", "foreground"] if outputs == 1 else [f"class{i}" for i in range(outputs)]
    metadata = ModelMetadata(
        input_size=(height, width), channels=channels, class_names=class_names,
        name=model_path.stem, description=f"{model_path.name} (metadata inferred by export)",
    )
    return metadata, False


def image_files(folder: Path) -> list[Path]:
    """Images of a folder dataset (its images/) or of a plain folder of images, sorted."""
    source = folder / "images" if (folder / "images").is_dir() else folder
    if not source.is_dir():
        raise FileNotFoundError(f"calibration folder {folder} does not exist")
    return sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def evenly_spaced(items: list, count: int) -> list:
    if len(items) <= count:
        return items
    return [items[int(i * len(items) / count)] for i in range(count)]


def calibration_tensors(metadata: ModelMetadata, options: ExportOptions) -> list[np.ndarray]:
    """Representative inputs through the project's own `preprocess`."""
    from tqdm import tqdm

    if options.calib is not None:
        files = evenly_spaced(image_files(options.calib), options.calib_n)
        images = []
        for path in files:
            try:
                images.append(read_image(path))
            except ValueError as error:
                print(f"warning: skipping calibration file: {error}", file=sys.stderr)
        if not images:
            raise ValueError(f"calibration folder {options.calib} has no usable images")
    else:
        recorded = recorded_split(metadata, "train")
        if recorded is None:
            raise ValueError("no calibration data: this model's metadata records none; give --calib DIR")
        images = evenly_spaced(recorded.images, options.calib_n)
    return [preprocess(image, metadata)[0] for image in tqdm(images, desc="calibration", unit="image")]


def held_out_set(metadata: ModelMetadata, options: ExportOptions) -> LabelledSet | None:
    if options.eval_data is not None:
        labelled = labelled_folder(metadata, options.eval_data)
    else:
        labelled = recorded_split(metadata, "validation")
    if labelled is None:
        return None
    keep = evenly_spaced(list(range(len(labelled.images))), options.eval_n)
    return LabelledSet(
        [labelled.images[i] for i in keep], [labelled.targets[i] for i in keep],
        [labelled.instance_labels[i] for i in keep] if labelled.instance_labels is not None else None,
    )


def interleaved_latency(
    backends: dict[str, object], tensor: np.ndarray, runs: int, settle_s: float = 0.0, seed: int = 0
) -> dict[str, dict]:
    """p50/p95 ms per backend, runs interleaved so machine noise hits every backend alike.

    Each round visits the backends in a new (seeded) random order, so no backend always runs
    right after the same neighbour. `settle_s` of idle before each timed call lets the previous
    backend's worker threads stop spinning: ONNX Runtime's keep a core busy after a call
    returns, which made LiteRT float32 on 2 threads 1.7x slower when it ran next.
    """
    for backend in backends.values():
        backend.run(tensor)
    names = list(backends)
    order = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(runs):
        for index in order.permutation(len(names)):
            name = names[index]
            if settle_s:
                time.sleep(settle_s)
            start = time.perf_counter()
            backends[name].run(tensor)
            samples[name].append((time.perf_counter() - start) * 1000.0)
    return {name: percentiles_ms(values) for name, values in samples.items()}


def export_model(model_path: Path, options: ExportOptions) -> tuple[dict, list[str]]:
    """Convert, evaluate and report one model; returns the report and any failed checks."""
    import tensorflow as tf

    from export.convert import convert_variant as convert
    from export.convert import export_saved_model, layer_statistics
    from export.report import write_report
    from unet.models import load_model
    from unet.runtime import load_model_checked

    model = load_model_checked(model_path, load_model)
    metadata, had_metadata = model_metadata(model_path, model)
    expected_input = (None, *metadata.input_size, metadata.channels)
    if tuple(model.input_shape) != expected_input and model.input_shape[1] is not None:
        raise MetadataError(f"{model_path} takes input {model.input_shape} but its metadata says "
                            f"{expected_input}")
    print(f"== {model_path}")
    calibration = calibration_tensors(metadata, options) if set(options.variants) & set(QUANTISED) else []

    def representative():
        for tensor in calibration:
            yield [tensor]

    reference = Segmenter(KerasBackend(model_path), metadata)
    held_out = held_out_set(metadata, options)
    images = held_out.images if held_out else []
    report: dict = {
        "model": model_path.name,
        "command": options.command,
        "tensorflow": tf.__version__,
        "machine": {"cpus": os.cpu_count()},
        "held_out": {"images": len(images), "labelled": held_out is not None,
                     "source": str(options.eval_data) if options.eval_data else "recorded validation split"},
        "variants": {},
    }
    if held_out is None:
        print("warning: no labelled held-out set (give --eval DIR); reporting agreement only",
              file=sys.stderr)
        images = [np.round(t[0] * 255).astype(np.uint8) for t in calibration[: options.eval_n]]
    reference_masks = segment_all(reference, images, progress=True)
    keras_row = {"file": model_path.name, "size_bytes": model_path.stat().st_size}
    if held_out is not None:
        keras_row["accuracy"] = score_segmentations(
            metadata, reference_masks, held_out.targets, held_out.instance_labels)
    report["keras"] = keras_row
    stem = metadata_path_for(model_path).stem
    latency_backends: dict[str, object] = {"keras-float32": reference.backend}
    # Converted files wait outside the model folder until the report is complete, so an export
    # that fails or is killed midway leaves the previous files and report as they were.
    staged_files: dict[Path, bytes] = {}
    with tempfile.TemporaryDirectory() as workdir:
        saved_model = export_saved_model(model, Path(workdir) / "saved_model")
        for variant in options.variants:
            print(f"-- converting {variant}")
            started = time.perf_counter()
            tflite_bytes = convert(saved_model, variant, representative if calibration else None,
                                   options.float_layers)
            raise_if_terminated()
            final_path = model_path.with_name(f"{stem}.{variant}.tflite")
            staged_files[final_path] = tflite_bytes
            path = Path(workdir) / final_path.name
            path.write_bytes(tflite_bytes)
            row = {"file": final_path.name, "size_bytes": len(tflite_bytes),
                   "convert_seconds": round(time.perf_counter() - started, 2)}
            backend = LiteRTBackend(path, num_threads=os.cpu_count())
            segmenter = Segmenter(backend, metadata)
            row["input"] = backend.input_quantisation.to_dict()
            row["output"] = backend.output_quantisation.to_dict()
            masks = segment_all(segmenter, images, progress=True)
            row["agreement_with_keras"] = compare_segmentations(metadata, reference_masks, masks)
            if held_out is not None:
                row["accuracy"] = score_segmentations(
                    metadata, masks, held_out.targets, held_out.instance_labels)
            report["variants"][variant] = row
            latency_backends[f"litert-{variant}"] = backend
            latency_backends[f"litert-{variant}-1thread"] = LiteRTBackend(path, num_threads=1)
        if set(options.variants) & set(QUANTISED) and options.worst_layers:
            print("-- quantisation debugger")
            statistics = layer_statistics(saved_model, representative)
            report["worst_layers"] = statistics[: options.worst_layers]
        tensor = preprocess(images[0], metadata)[0]
        print(f"-- latency ({options.latency_runs} interleaved runs per backend)")
        report["latency"] = interleaved_latency(
            latency_backends, tensor, options.latency_runs) if options.latency_runs else {}
    float_size = report["variants"].get("float32", {}).get("size_bytes")
    for row in report["variants"].values():
        row["size_ratio_to_float32"] = round(row["size_bytes"] / float_size, 4) if float_size else None
    failures = quality_failures(report, options.max_iou_drop)
    report["checks"] = {"max_iou_drop": options.max_iou_drop, "failures": failures}
    metadata.variants = {
        variant: {key: row[key] for key in ("file", "size_bytes", "input", "output")}
        for variant, row in report["variants"].items()
    }
    raise_if_terminated()
    for final_path, tflite_bytes in staged_files.items():
        atomic_write_bytes(final_path, tflite_bytes)
    save_metadata(metadata, metadata_path_for(model_path))
    if not had_metadata:
        print(f"wrote inferred metadata {metadata_path_for(model_path)}; check its normalisation and classes")
    write_report(report, metadata, model_path.with_name(f"{stem}.export"))
    if had_metadata:
        from export.model_card import write_model_card

        write_model_card(model_path.parent, metadata, report, options.command)
    return report, failures


def quality_failures(report: dict, max_iou_drop: float) -> list[str]:
    """Quantised variants whose mean IoU fell more than `max_iou_drop` below Keras float."""
    failures = []
    keras_accuracy = report["keras"].get("accuracy")
    for variant, row in report["variants"].items():
        if variant not in QUANTISED:
            continue
        if keras_accuracy is not None:
            drop = keras_accuracy["mean_iou"] - row["accuracy"]["mean_iou"]
            measure = "mean IoU against ground truth"
        else:
            drop = 1.0 - row["agreement_with_keras"]["mean_iou"]
            measure = "mean IoU against the Keras float masks"
        row["mean_iou_drop"] = drop
        if drop > max_iou_drop:
            failures.append(
                f"{report['model']}: {variant} {measure} is {drop:.4f} below float "
                f"(allowed {max_iou_drop}); try --float-layers with the worst layers in the report"
            )
    return failures


def parse_args(argv: list[str] | None) -> tuple[list[Path], ExportOptions]:
    from export.convert import DEFAULT_VARIANTS, VARIANTS

    parser = argparse.ArgumentParser(prog="python export/to_tflite.py",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, action="append",
                        help="a .keras file (repeatable; default: every assets/*/*.keras)")
    parser.add_argument("--quant", default=",".join(DEFAULT_VARIANTS),
                        help=f"comma-separated variants from {','.join(VARIANTS)}")
    parser.add_argument("--calib", type=Path, help="calibration images (folder, or a dataset's images/)")
    parser.add_argument("--calib-n", type=int, default=200)
    parser.add_argument("--eval", dest="eval_data", type=Path,
                        help="labelled held-out folder dataset (default: the recorded validation split)")
    parser.add_argument("--eval-n", type=int, default=64, help="at most this many held-out images")
    parser.add_argument("--max-iou-drop", type=float, default=0.02)
    parser.add_argument("--float-layers", default="", help="Keras layer names kept in float in int8")
    parser.add_argument("--latency-runs", type=int, default=30)
    parser.add_argument("--worst-layers", type=int, default=8)
    args = parser.parse_args(argv)
    variants = tuple(v.strip() for v in args.quant.split(",") if v.strip())
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown or not variants:
        parser.error(f"--quant {args.quant!r}: unknown variants {unknown}; choose from {VARIANTS}")
    models = args.model or sorted(ASSETS.glob("*/*.keras"))
    if not models:
        parser.error(f"no models under {ASSETS}; give --model PATH.keras (or run `make models`)")
    options = ExportOptions(
        variants=variants, calib=args.calib, calib_n=args.calib_n, eval_data=args.eval_data,
        eval_n=args.eval_n, max_iou_drop=args.max_iou_drop,
        float_layers=tuple(n.strip() for n in args.float_layers.split(",") if n.strip()),
        latency_runs=args.latency_runs, worst_layers=args.worst_layers,
        command="python export/to_tflite.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
    )
    return models, options


def main(argv: list[str] | None = None) -> int:
    models, options = parse_args(argv)
    all_failures = []
    for model_path in models:
        _, failures = export_model(model_path, options)
        all_failures += failures
    for failure in all_failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if all_failures else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

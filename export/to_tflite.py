"""Export trained Keras U-Nets to float32, float16 and int8 TFLite, with a quantisation report.

    python export/to_tflite.py                         # every shipped model under assets/
    python export/to_tflite.py --model runs/x/model.keras --calib my-data --eval my-data

Beside each model it writes `NAME.<variant>.tflite`, updates `NAME.json` (the metadata,
with each variant's input/output scale and zero-point read back from the converted file),
and writes `NAME.export.json` and `NAME.export.md`: size, accuracy, agreement with the
Keras model, latency and the worst-quantised layers of every variant. Every `.tflite` carries
TFLite metadata and `NAME.json` inside it (export/tflite_metadata.py); `NAME.portable.tflite`
takes raw RGB bytes and normalises them in its own graph (export/portable.py). It exits non-zero
when int8 loses more mean IoU than --max-iou-drop, after writing the report.

One export is five steps: prepare (model, metadata, calibration and held-out images) ->
convert -> score -> measure -> gate, then commit writes every file at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from export.job import ConvertedVariant, ExportJob, ExportOptions
from export.report import ExportReport
from unet.cli import raise_if_terminated, run_cli
from unet.data.splits import LabelledSet, labelled_folder, recorded_split
from unet.runtime.atomic import atomic_write_bytes
from unet.runtime.backends import KerasBackend, LiteRTBackend, model_call
from unet.runtime.errors import UserError
from unet.runtime.evaluation import (
    agreement,
    score_segmentations,
    segment_all,
    with_progress,
)
from unet.runtime.imageio import image_files, read_image
from unet.runtime.metadata import (
    MetadataError,
    ModelMetadata,
    load_metadata,
    metadata_path_for,
    save_metadata,
)
from unet.runtime.preprocess import preprocess
from unet.runtime.segmenter import Segmenter
from unet.runtime.timing import interleaved_latency
from unet.runtime.variants import (
    BROWSER_VARIANT,
    DEFAULT_VARIANTS,
    KERAS,
    PORTABLE_VARIANT,
    QUANTISED_VARIANTS,
    SHIPPED_VARIANTS,
    VARIANTS,
    litert,
    variant_path,
)

ASSETS = Path(__file__).resolve().parents[1] / "assets"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def export_model(model_path: Path, options: ExportOptions) -> tuple[ExportReport, list[str]]:
    """Convert, evaluate and report one model; returns the report and any failed checks."""
    from export.convert import export_saved_model

    job = prepare(model_path, options)
    report = new_report(job)
    # Converted files wait outside the model folder until the report is complete, so an export
    # that fails or is killed midway leaves the previous files and report as they were.
    with tempfile.TemporaryDirectory() as workdir:
        saved_model = export_saved_model(rewritten(job, report), Path(workdir) / "saved_model")
        converted = convert_all(job, saved_model, Path(workdir))
        backends = {}
        for variant in converted:
            report.variants[variant.variant], backends[variant.variant] = score(job, variant)
        analyse_quantisation(job, saved_model, Path(workdir), report, converted, backends)
        if PORTABLE_VARIANT in backends and BROWSER_VARIANT in backends:
            report.variants[PORTABLE_VARIANT]["agreement_with_network"] = portable_agreement(job, backends)
        report.latency = measure(job, converted, backends)
    describe(job, report, converted)
    add_size_ratios(report)
    verdict = options.gate(report)
    verdict.record(report)
    failures = verdict.failures
    commit(job, report, converted)
    return report, failures


def prepare(model_path: Path, options: ExportOptions) -> ExportJob:
    """Load the model and its metadata, the calibration tensors and the held-out images."""
    from unet.runtime.backends import load_model_checked
    from unet.training.models import load_model

    model = load_model_checked(model_path, load_model)
    metadata, had_metadata = model_metadata(model_path, model)
    expected_input = (None, *metadata.input_size, metadata.channels)
    if tuple(model.input_shape) != expected_input and model.input_shape[1] is not None:
        raise MetadataError(f"{model_path} takes input {model.input_shape} but its metadata says "
                            f"{expected_input}")
    print(f"== {model_path}")
    recorded_float = tuple(metadata.variants.get("int8", {}).get("float_tensors", ()))
    if recorded_float and not (options.float_layers or options.float_tensors):
        print(f"keeping the {len(recorded_float)} float tensors a previous float-layer search chose "
              "(recorded in the metadata)")
        options = dataclasses.replace(options, float_tensors=recorded_float)
    wants_calibration = bool(set(options.variants) & set(QUANTISED_VARIANTS))
    calibration = calibration_tensors(metadata, options) if wants_calibration else []
    held_out = held_out_set(metadata, options)
    if held_out is None:
        print("warning: no labelled held-out set (give --eval DIR); reporting agreement only",
              file=sys.stderr)
        images = [np.round(t[0] * 255).astype(np.uint8) for t in calibration[: options.eval_n]]
    else:
        images = held_out.images
    reference = Segmenter(KerasBackend(model_path), metadata)
    job = ExportJob(model_path, model, metadata, had_metadata, options, calibration, held_out, images,
                    reference)
    job.reference_masks = segment_all(reference, images, progress=True)
    return job


def model_metadata(model_path: Path, model) -> tuple[ModelMetadata, bool]:
    """The sidecar metadata, or metadata inferred from a foreign model's shapes (and False)."""
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


def calibration_images(folder: Path) -> list[Path]:
    """Images of a folder dataset (its images/) or of a plain folder of images, sorted."""
    source = folder / "images" if (folder / "images").is_dir() else folder
    if not source.is_dir():
        raise UserError(f"calibration folder {folder} does not exist")
    return image_files(source)


def evenly_spaced(items: list, count: int) -> list:
    if len(items) <= count:
        return items
    return [items[int(i * len(items) / count)] for i in range(count)]


def calibration_tensors(metadata: ModelMetadata, options: ExportOptions) -> list[np.ndarray]:
    """Representative inputs through the project's own `preprocess`."""
    if options.calib is not None:
        images = []
        for path in evenly_spaced(calibration_images(options.calib), options.calib_n):
            try:
                images.append(read_image(path))
            except UserError as error:
                print(f"warning: skipping calibration file: {error}", file=sys.stderr)
        if not images:
            raise UserError(f"calibration folder {options.calib} has no usable images")
    else:
        recorded = recorded_split(metadata, "train")
        if recorded is None:
            raise UserError("no calibration data: this model's metadata records none; give --calib DIR")
        images = evenly_spaced(recorded.images, options.calib_n)
    return [preprocess(image, metadata)[0] for image in with_progress(images, True, "calibration")]


def held_out_set(metadata: ModelMetadata, options: ExportOptions) -> LabelledSet | None:
    if options.eval_data is not None:
        labelled = labelled_folder(metadata, options.eval_data)
    else:
        labelled = recorded_split(metadata, "validation")
    if labelled is None:
        return None
    return labelled.subset(evenly_spaced(list(range(len(labelled.images))), options.eval_n))


def rewritten(job: ExportJob, report: ExportReport):
    """The model to convert: with slow-lowering layers rewritten (export/rewrite.py) unless turned off."""
    from export.rewrite import check_rewrite, rewrite_for_tflite

    if not job.options.rewrite:
        report.rewrites = {"enabled": False, "layers": []}
        return job.model
    model, rewrites = rewrite_for_tflite(job.model)
    report.rewrites = {"enabled": True, "layers": [r.to_dict() for r in rewrites]}
    if rewrites:
        inputs = [preprocess(image, job.metadata)[0] for image in job.images[:4]]
        report.rewrites["max_abs_difference"] = check_rewrite(job.model, model, inputs)
        print(f"-- rewrote {len(rewrites)} layers for XNNPACK: {rewrites[0].was} => {rewrites[0].now}"
              f"{' (and alike)' if len(rewrites) > 1 else ''}; outputs identical on {len(inputs)} images")
    return model


def new_report(job: ExportJob) -> ExportReport:
    import tensorflow as tf

    options, held_out = job.options, job.held_out
    keras_row = {"file": job.model_path.name, "size_bytes": job.model_path.stat().st_size}
    if held_out is not None:
        keras_row["accuracy"] = score_segmentations(
            job.metadata, job.reference_masks, held_out.targets, held_out.instance_labels)
    return ExportReport(
        model=job.model_path.name, command=options.command, tensorflow=tf.__version__,
        machine={"cpus": os.cpu_count()},
        held_out={"images": len(job.images), "labelled": held_out is not None,
                  "source": str(options.eval_data) if options.eval_data else "recorded validation split"},
        keras=keras_row,
    )


def convert_all(job: ExportJob, saved_model: Path, workdir: Path) -> list[ConvertedVariant]:
    """Every asked-for variant; the portable one is built on int8-float-io (converted for it if need be)."""
    converted = {variant: convert(job, saved_model, variant, workdir)
                 for variant in job.options.variants if variant != PORTABLE_VARIANT}
    if PORTABLE_VARIANT in job.options.variants:
        network = converted.get(BROWSER_VARIANT) or convert(job, saved_model, BROWSER_VARIANT, workdir)
        converted[PORTABLE_VARIANT] = convert(job, saved_model, PORTABLE_VARIANT, workdir, network)
    return [converted[variant] for variant in job.options.variants]


def convert(
    job: ExportJob, saved_model: Path, variant: str, workdir: Path, network: ConvertedVariant | None = None
) -> ConvertedVariant:
    """One variant's bytes, also written to `workdir` so the later steps can load it.

    The portable variant is `network` (int8-float-io) behind the preprocessing graph.
    """
    from export.convert import convert_variant
    from export.portable import portable_tflite

    print(f"-- converting {variant}")
    started = time.perf_counter()
    preprocessing = None
    if variant == PORTABLE_VARIANT:
        tflite_bytes, preprocessing = portable_tflite(job.metadata, network.tflite_bytes)
    else:
        tflite_bytes = convert_variant(saved_model, variant, job.representative if job.calibration else None,
                                       job.options.float_layers, job.options.float_tensors)
    raise_if_terminated()
    final_path = variant_path(job.model_path, variant)
    staged_path = workdir / final_path.name
    staged_path.write_bytes(tflite_bytes)
    return ConvertedVariant(variant, final_path, staged_path, tflite_bytes,
                            round(time.perf_counter() - started, 2), preprocessing)


def score(job: ExportJob, converted: ConvertedVariant) -> tuple[dict, LiteRTBackend]:
    """Size, I/O quantisation, agreement with Keras and (with labels) accuracy of one variant."""
    from export.graph_health import graph_health
    from export.portable import OUTSIDE_XNNPACK_REASON

    backend = LiteRTBackend(converted.staged_path, num_threads=os.cpu_count())
    masks = segment_all(Segmenter(backend, job.metadata), job.images, progress=True)
    health = graph_health(converted.staged_path)
    if converted.preprocessing_bytes is not None:
        preprocessing = graph_health(converted.preprocessing_bytes)
        health = health.with_part_by_design(preprocessing, OUTSIDE_XNNPACK_REASON)
    for problem in health.problems():
        print(f"warning: {converted.variant}: {problem}", file=sys.stderr)
    row = {"file": converted.final_path.name, "size_bytes": len(converted.tflite_bytes),
           "convert_seconds": converted.convert_seconds,
           **({"float_tensors": list(job.options.float_tensors)}
              if converted.variant in QUANTISED_VARIANTS and job.options.float_tensors else {}),
           "input": backend.input_quantisation.to_dict(), "output": backend.output_quantisation.to_dict(),
           "graph": health.to_dict(),
           "agreement_with_keras": agreement(job.metadata, job.reference_masks, masks)}
    if job.held_out is not None:
        row["accuracy"] = score_segmentations(job.metadata, masks, job.held_out.targets,
                                              job.held_out.instance_labels)
    return row, backend


def analyse_quantisation(
    job: ExportJob, saved_model: Path, workdir: Path, report: ExportReport,
    converted: list[ConvertedVariant], backends: dict[str, LiteRTBackend],
) -> None:
    """The worst-quantised layers for the report and, if asked and needed, the float-layer search."""
    from export.convert import layer_statistics

    options = job.options
    if not set(options.variants) & set(QUANTISED_VARIANTS):
        return
    if not (options.worst_layers or options.search_float_layers):
        return
    print("-- quantisation debugger")
    statistics = layer_statistics(saved_model, job.representative)
    report.worst_layers = statistics[: options.worst_layers]
    if options.search_float_layers and "int8" in report.variants and options.gate(report).failures:
        from export.float_search import search_float_layers

        search_float_layers(job, saved_model, workdir, statistics, report, converted, backends, score)


def portable_agreement(job: ExportJob, backends: dict[str, LiteRTBackend]) -> dict:
    """What moving the preprocessing into the graph costs: portable against int8-float-io masks.

    Both get the held-out images; the portable file sees them as 8-bit RGB. Its network is
    int8-float-io's byte for byte, so any difference comes from the preprocessing (8-bit input,
    float32 arithmetic in the graph instead of numpy's float64 percentiles).
    """
    masks = {variant: segment_all(Segmenter(backends[variant], job.metadata), job.images)
             for variant in (BROWSER_VARIANT, PORTABLE_VARIANT)}
    return agreement(job.metadata, masks[BROWSER_VARIANT], masks[PORTABLE_VARIANT])


def measure(job: ExportJob, converted: list[ConvertedVariant], backends: dict[str, LiteRTBackend]) -> dict:
    """Interleaved latency of Keras and of every variant on all threads and on one thread.

    Each runner gets the first held-out image as its own backend takes it (`model_call`), and
    only the model call is timed.
    """
    runs = job.options.latency_runs
    if not runs:
        return {}
    image, metadata = job.images[0], job.metadata
    runners = {KERAS.id: model_call(job.reference.backend, image, metadata)}
    for variant in converted:
        runners[litert(variant.variant).id] = model_call(backends[variant.variant], image, metadata)
        one_thread = LiteRTBackend(variant.staged_path, num_threads=1)
        runners[litert(variant.variant, 1).id] = model_call(one_thread, image, metadata)
    print(f"-- latency ({runs} interleaved runs per backend)")
    return interleaved_latency(runners, None, runs)


def add_size_ratios(report: ExportReport) -> None:
    float_size = report.variants.get("float32", {}).get("size_bytes")
    for row in report.variants.values():
        row["size_ratio_to_float32"] = round(row["size_bytes"] / float_size, 4) if float_size else None


def describe(job: ExportJob, report: ExportReport, converted: list[ConvertedVariant]) -> None:
    """Record the variants in the metadata, then write TFLite metadata (and that JSON) into every file.

    The files were scored without it: metadata adds a buffer and packed files, never an op.
    Sizes in the report are the final files'. The metadata records no sizes, since a file
    that carries the JSON cannot hold its own final size.
    """
    from export.tflite_metadata import model_version, with_tflite_metadata

    job.metadata.variants = {
        variant: {key: row[key] for key in ("file", "input", "output", "float_tensors") if key in row}
        for variant, row in report.variants.items()
    }
    version = model_version(job.model_path)
    for variant in converted:
        variant.tflite_bytes = with_tflite_metadata(variant.tflite_bytes, job.metadata, version)
        report.variants[variant.variant]["size_bytes"] = len(variant.tflite_bytes)


def commit(job: ExportJob, report: ExportReport, converted: list[ConvertedVariant]) -> None:
    """Write the .tflite files, the metadata, the report and the model card, each atomically."""
    from export.model_card import write_model_card
    from export.report import write_report

    metadata, model_path = job.metadata, job.model_path
    raise_if_terminated()
    for variant in converted:
        atomic_write_bytes(variant.final_path, variant.tflite_bytes)
    save_metadata(metadata, metadata_path_for(model_path))
    if not job.had_metadata:
        print(f"wrote inferred metadata {metadata_path_for(model_path)}; check its normalisation and classes")
    written = report.to_dict()
    write_report(written, metadata, metadata_path_for(model_path).with_suffix(".export"))
    if job.had_metadata:
        write_model_card(model_path.parent, metadata, written, job.options.command)


def parse_args(argv: list[str] | None) -> tuple[list[Path], ExportOptions]:
    parser = argparse.ArgumentParser(prog="python export/to_tflite.py",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, action="append",
                        help="a .keras file (repeatable; default: every assets/*/*.keras)")
    parser.add_argument("--quant",
                        help=f"comma-separated variants from {','.join(VARIANTS)} (default: "
                        f"{','.join(DEFAULT_VARIANTS)}; for the shipped models {','.join(SHIPPED_VARIANTS)})")
    parser.add_argument("--calib", type=Path, help="calibration images (folder, or a dataset's images/)")
    defaults = ExportOptions(variants=DEFAULT_VARIANTS)
    parser.add_argument("--calib-n", type=int, default=defaults.calib_n)
    parser.add_argument("--eval", dest="eval_data", type=Path,
                        help="labelled held-out folder dataset (default: the recorded validation split)")
    parser.add_argument("--eval-n", type=int, default=defaults.eval_n,
                        help="at most this many held-out images")
    parser.add_argument("--max-iou-drop", type=float, default=defaults.max_iou_drop)
    parser.add_argument("--min-pixel-agreement", type=float, default=defaults.min_pixel_agreement,
                        help="without labels: the share of pixels int8 must agree on with float")
    parser.add_argument("--float-layers", default="", help="Keras layer names kept in float in int8")
    parser.add_argument("--latency-runs", type=int, default=defaults.latency_runs)
    parser.add_argument("--worst-layers", type=int, default=defaults.worst_layers)
    parser.add_argument("--search-float-layers", action="store_true",
                        help="if int8 fails the gate, keep its worst-quantised tensors in float, "
                        "1, 2, 4, ... at a time, until it passes (saved in the metadata)")
    parser.add_argument("--search-max-size-ratio", type=float, default=defaults.search_max_size_ratio,
                        help="stop the search when int8 would be larger than this share of float32")
    parser.add_argument("--search-max-latency-ratio", type=float, default=defaults.search_max_latency_ratio,
                        help="stop the search when int8 would be slower than this times float32")
    parser.add_argument("--no-rewrite", dest="rewrite", action="store_false",
                        help="convert the model as it is, without rewriting layers whose TFLite "
                        "lowering XNNPACK cannot run (UpSampling2D nearest)")
    args = parser.parse_args(argv)
    args.quant = args.quant or ",".join(DEFAULT_VARIANTS if args.model else SHIPPED_VARIANTS)
    variants = tuple(v.strip() for v in args.quant.split(",") if v.strip())
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown or not variants:
        parser.error(f"--quant {args.quant!r}: unknown variants {unknown}; choose from {VARIANTS}")
    models = args.model or sorted(ASSETS.glob("*/*.keras"))
    if not models:
        parser.error(f"no models under {ASSETS}; give --model PATH.keras (or run `make models`)")
    options = ExportOptions(
        variants=variants, calib=args.calib, calib_n=args.calib_n, eval_data=args.eval_data,
        eval_n=args.eval_n, max_iou_drop=args.max_iou_drop, min_pixel_agreement=args.min_pixel_agreement,
        float_layers=tuple(n.strip() for n in args.float_layers.split(",") if n.strip()),
        latency_runs=args.latency_runs, worst_layers=args.worst_layers, rewrite=args.rewrite,
        search_float_layers=args.search_float_layers, search_max_size_ratio=args.search_max_size_ratio,
        search_max_latency_ratio=args.search_max_latency_ratio,
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

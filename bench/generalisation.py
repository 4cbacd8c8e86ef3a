"""How the nuclei model does on images it never trained on, beside the classical baseline.

    python -m bench.generalisation [--model assets/nuclei/nuclei.json] [--out JSON]

Sources: BBBC007 validation images (the training source, other images), cells3d slices (a
real source held out of training entirely), and simulated nuclei with settings outside the
training ranges (brightness spread, nucleus size, photon count, blur) on seeds the training
data never used. Each row scores float32 and int8 through the shared runtime, plain (resized to
the model input) and with the command lines' default (auto-scale from a full-resolution first
pass), and the classical Otsu + watershed baseline, whose parameters are chosen on the
training sources only. Writes `generalisation.json` and `generalisation.md` beside the model
(the model card embeds the table).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.results_file import machine, write_results
from bench.separation import AT_IMAGE_SIZE, AT_MODEL_RESOLUTION, instances_at_image_size
from unet.cli import run_cli
from unet.data.nuclei_sim import NucleiSpec, make_nuclei_dataset
from unet.data.recipes import NUCLEI_SIM, fetch, simulated_nuclei_specs
from unet.data.splits import LabelledSet, recorded_split
from unet.runtime.classical import ClassicalParams, choose_classical_params, otsu_watershed
from unet.runtime.instance_errors import dataset_error_counts
from unet.runtime.instance_metrics import (
    dataset_instance_scores,
    dataset_touching_pairs_split,
    touching_pairs,
)
from unet.runtime.metadata import ModelMetadata, load_metadata
from unet.runtime.segmenter import Segmenter, SegmentOptions
from unet.runtime.variants import variant_path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
HELD_OUT_SEED = 9_000
HELD_OUT_IMAGES = 10
BASELINE_SIM_IMAGES = 30
VARIANTS = ("float32", "int8")
BBBC007_ROW = "BBBC007 validation images"


@dataclass
class Source:
    name: str
    labels_made_by: str
    relation: str
    images: list[np.ndarray]
    instance_labels: list[np.ndarray]


def simulated_settings(
    first_seed: int = HELD_OUT_SEED, images: int = HELD_OUT_IMAGES, trained: Sequence[NucleiSpec] = ()
) -> dict[str, NucleiSpec]:
    """Held-out simulator settings: each takes one property (crowding: coverage and clustering
    together) beyond the ranges of the simulated data the model `trained` on (default: every
    simulator recipe). Setting i is drawn on seed `first_seed` + i."""
    trained = list(trained) or list(simulated_nuclei_specs().values())
    base = dataclasses.replace(NUCLEI_SIM, count=images)
    sizes, photons, blur, coverage, cluster, jitter, spread = (
        _span(trained, name) for name in
        ("diameter", "photons", "blur", "coverage", "cluster", "size_jitter", "brightness_spread"))
    settings = {
        "training settings": {},
        f"brightness spread 30x (trained {spread}x)": {"brightness_spread": 30.0},
        f"nuclei 5-7 px (trained {sizes})": {"diameter": (5.0, 7.0), "size_jitter": 0.1},
        f"nuclei 44-60 px (trained {sizes})": {"diameter": (44.0, 60.0), "size": (384, 384)},
        f"low light, 15-40 photons (trained {photons})": {"photons": (15.0, 40.0)},
        f"heavy blur, sigma 2-3 px (trained {blur})": {"blur": (2.0, 3.0)},
        "field of view 1024x1024, nuclei 15-20 px (trained 256x256)": {"diameter": (15.0, 20.0),
                                                                       "size": (1024, 1024)},
        f"mixed sizes, jitter 0.5 (trained {jitter})": {"size_jitter": 0.5},
        f"crowded, coverage 0.55-0.7, clustering 0.8 (trained {coverage}, {cluster})":
            {"coverage": (0.55, 0.7), "cluster": 0.8},
        **separation_settings(_span(trained, "aspect")),
    }
    return {name: dataclasses.replace(base, seed=first_seed + index, **changes)
            for index, (name, changes) in enumerate(settings.items())}


def separation_settings(trained_aspect: str) -> dict[str, dict]:
    """Settings that stress the separation of touching nuclei (unet.data.nuclei_sim's groups)."""
    touching = {"overlap": 0.25, "coverage": (0.2, 0.35)}
    return {
        "touching pairs": {"group_size": 2, **touching},
        "chains of 4 touching nuclei": {"group_size": 4, **touching, "coverage": (0.25, 0.4)},
        f"elongated side by side, aspect 2.5-3.5 (trained {trained_aspect})":
            {"group_size": 2, "side_by_side": True, "aspect": (2.5, 3.5), **touching},
        "bright beside dim, 8x, touching pairs": {"group_size": 2, "neighbour_contrast": 8.0, **touching},
    }


def trained_simulations(metadata: ModelMetadata) -> list[NucleiSpec]:
    """The simulator recipes among the datasets the model trained on."""
    specs = simulated_nuclei_specs()
    return [specs[name] for name in metadata.training.get("dataset", []) if name in specs]


def _span(specs: Sequence[NucleiSpec], name: str) -> str:
    """A setting's range over several recipes: "low-high", or one value when they agree."""
    values = [getattr(spec, name) for spec in specs]
    low = min(v[0] if isinstance(v, tuple) else v for v in values)
    high = max(v[1] if isinstance(v, tuple) else v for v in values)
    return f"{low:g}" if low == high else f"{low:g}-{high:g}"


def bbbc007_validation(metadata: ModelMetadata) -> LabelledSet | None:
    """The BBBC007 images of the model's recorded validation split (None: no split recorded)."""
    validation = recorded_split(metadata, "validation")
    if validation is None:
        return None
    stems = metadata.training["validation_stems"]
    return validation.subset([i for i, stem in enumerate(stems) if stem.startswith("bbbc007/")])


def evaluation_sources(metadata: ModelMetadata) -> list[Source]:
    sources = []
    chosen = bbbc007_validation(metadata)
    if chosen is not None and chosen.images:
        sources.append(Source(BBBC007_ROW, "Voronoi-Otsu (classical)",
                              "training source, unseen images", chosen.images, chosen.instance_labels))
    cells3d = fetch("cells3d-nuclei", REPO / "data" / "cells3d-nuclei")
    from unet.data.folder import load_folder

    samples = load_folder(cells3d)
    sources.append(Source("cells3d slices (Allen Institute)", "automatic, method not stated",
                          "held-out source", [s.image for s in samples], [s.labels for s in samples]))
    for name, spec in simulated_settings(trained=trained_simulations(metadata)).items():
        simulated = make_nuclei_dataset(spec)
        sources.append(Source(f"simulated: {name}", "exact (simulator)", "held-out settings and seeds",
                              [s.image for s in simulated], [s.instance_labels for s in simulated]))
    return sources


def baseline_params(metadata: ModelMetadata) -> ClassicalParams:
    """Chosen on the training split: every real training image and some simulated ones."""
    training = recorded_split(metadata, "train")
    stems = metadata.training["train_stems"]
    is_simulated = [s.split("/")[0] in simulated_nuclei_specs() for s in stems]
    real = [i for i, simulated in enumerate(is_simulated) if not simulated]
    simulated = [i for i, simulated in enumerate(is_simulated) if simulated][:BASELINE_SIM_IMAGES]
    chosen = training.subset(real + simulated)
    return choose_classical_params(chosen.images, chosen.instance_labels)


def score_source(source: Source, segmenters: dict[str, Segmenter], params: ClassicalParams) -> dict:
    predicted: dict[str, list[np.ndarray]] = {"classical": []}
    scales: dict[str, list[float]] = {}
    for image in source.images:
        predicted["classical"].append(otsu_watershed(image, params))
        for variant, segmenter in segmenters.items():
            default = SegmentOptions.default_for(segmenter.metadata).to_kwargs()
            for method, options in (("plain", {}), ("default", default)):
                result = segmenter.segment(image, **options)
                predicted.setdefault(f"{variant} {method}", []).append(result.segmentation.instance_labels)
                if method == "default":
                    scales.setdefault(variant, []).append(result.scale.passes)
    scores = {name: _summary(dataset_instance_scores(source.instance_labels, labels))
              for name, labels in predicted.items()}
    split = {name.split()[0]: dataset_touching_pairs_split(source.instance_labels, labels)
             for name, labels in predicted.items() if name.endswith("default")}
    touching = sum(len(touching_pairs(labels)) for labels in source.instance_labels)
    errors = {name.split()[0]: dataset_error_counts(source.instance_labels, labels).to_dict()
              for name, labels in predicted.items() if name.endswith("default")}
    return {"source": source.name, "labels_made_by": source.labels_made_by, "relation": source.relation,
            "images": len(source.images), "nuclei": scores["classical"]["true_count"], "scores": scores,
            "classical_objects_off_labels": off_label_share(source.instance_labels, predicted["classical"]),
            "touching_pairs": touching,
            "touching_pairs_split": {variant: done / max(1, touching)
                                     for variant, (done, _) in split.items()},
            "errors": errors,
            "auto_scale_second_passes": {v: int(sum(p == 2 for p in passes)) for v, passes in scales.items()}}


def off_label_share(true_labels: list[np.ndarray], found: list[np.ndarray]) -> float:
    """The share of objects found that lie at least 90% outside every label: how incomplete the
    labels look, judged by the classical baseline so that the model plays no part in it."""
    counts = dataset_error_counts(true_labels, found)
    return counts.on_no_label / max(1, counts.predicted)


def postprocess_resolution_scores(source: Source, segmenter: Segmenter) -> dict[str, float]:
    """F1@0.5 of one model output separated at model resolution and at image size (bench.separation)."""
    from unet.runtime.preprocess import postprocess, preprocess

    metadata = segmenter.metadata
    at_model, at_image = [], []
    for image in source.images:
        tensor, info = preprocess(image, metadata)
        output = segmenter.run_tensor(tensor)
        at_model.append(postprocess(output, info, metadata).instance_labels)
        at_image.append(instances_at_image_size(output[0], info.original_size, metadata))
    return {AT_MODEL_RESOLUTION: dataset_instance_scores(source.instance_labels, at_model)["f1@0.5"],
            AT_IMAGE_SIZE: dataset_instance_scores(source.instance_labels, at_image)["f1@0.5"]}


def _summary(scores: dict) -> dict:
    keys = ("f1@0.5", "f1@0.75", "panoptic_quality", "true_count", "predicted_count")
    return {key: scores[key] for key in keys}


def markdown_table(rows: list[dict], params: ClassicalParams, cpu: str) -> str:
    lines = [
        "| source | labels made by | images / nuclei | classical F1@0.5 | float32 F1@0.5 / @0.75 / PQ "
        "| int8 F1@0.5 / @0.75 / PQ | float32 default F1@0.5 | int8 default F1@0.5 | found by int8 "
        "| classical objects on no label |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        s = row["scores"]

        def triple(name: str, s: dict = s) -> str:
            return f"{s[name]['f1@0.5']:.3f} / {s[name]['f1@0.75']:.3f} / {s[name]['panoptic_quality']:.3f}"

        lines.append(
            f"| {row['source']} ({row['relation']}) | {row['labels_made_by']} | {row['images']} / "
            f"{row['nuclei']} | {s['classical']['f1@0.5']:.3f} | {triple('float32 plain')} | "
            f"{triple('int8 plain')} | {s['float32 default']['f1@0.5']:.3f} | "
            f"{s['int8 default']['f1@0.5']:.3f} | {s['int8 plain']['predicted_count']} | "
            f"{row['classical_objects_off_labels']:.0%} |"
        )
    lines += ["", "Plain: the whole image resized to the model input, one pass. Default: what "
              "`unet.segment` and `unet.evaluate` do without a scale option, auto-scale "
              "from a first pass at the image's own resolution (`SegmentOptions.default_for`). Classical "
              "objects on no label: the share of the baseline's objects that lie at least 90% outside "
              "every label, a check of the labels' completeness in which the model plays no part "
              "(simulated labels are complete, so there it counts the baseline's false detections).",
              "", "Where instances are separated, int8, F1@0.5: at the model's resolution (the runtime's "
              "method) or after resizing the probabilities to the image (the method it replaced):", "",
              "| source | model resolution | image size |",
              "|---|---:|---:|"]
    for row in rows:
        f1 = row["int8_f1_by_postprocess_resolution"]
        lines.append(f"| {row['source']} | {f1[AT_MODEL_RESOLUTION]:.3f} | {f1[AT_IMAGE_SIZE]:.3f} |")
    lines += ["", "Touching nuclei split apart, default path: of the pairs of labelled nuclei that share an "
              "edge, the share whose two nuclei are both found, each by its own object at IoU >= 0.5:", "",
              "| source | touching pairs | float32 | int8 |", "|---|---:|---:|---:|"]
    for row in rows:
        split = row["touching_pairs_split"]
        lines.append(f"| {row['source']} | {row['touching_pairs']} | {split['float32']:.1%} | "
                     f"{split['int8']:.1%} |")
    lines += ["", "Why labelled nuclei are missed, int8, default path (`unet.runtime.instance_errors`): "
              "of the nuclei no object matches at IoU >= 0.5, those merged with a neighbour, split into "
              "pieces, found but badly shaped, and not found; and the objects found on no label:", "",
              "| source | nuclei | matched | merged | split | badly shaped | not found "
              "| objects on no label |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        e = row["errors"]["int8"]
        lines.append(f"| {row['source']} | {e['labelled']} | {e['matched']} | {e['merged']} | {e['split']} | "
                     f"{e['badly_shaped']} | {e['not_found']} | {e['on_no_label']} of {e['predicted']} |")
    lines += ["", f"Classical baseline: Otsu + distance-transform watershed, {params.to_dict()}, chosen "
              "on the training split only. Measured with `python -m bench.generalisation` on "
              f"{cpu}.", "", "Known limits, read from the rows above:", ""]
    lines += known_limits(rows)
    return "\n".join(lines) + "\n"


MARGIN = 0.10
# The share of objects on no label above which a real source's labels are called incomplete.
INCOMPLETE_LABELS = 0.10


def known_limits(rows: list[dict]) -> list[str]:
    """Where the model does not beat the classical baseline by MARGIN F1@0.5, and why it may not."""
    limits = []
    for row in rows:
        s = row["scores"]
        classical = s["classical"]["f1@0.5"]
        best = max(s[f"{v} {m}"]["f1@0.5"] for v in VARIANTS for m in ("plain", "default"))
        plain = min(s[f"{v} plain"]["f1@0.5"] for v in VARIANTS)
        off_labels = row["classical_objects_off_labels"]
        incomplete = (f" {off_labels:.0%} of the baseline's objects lie on no label, so objects the labels "
                      "leave out count against both." if row["labels_made_by"] != "exact (simulator)"
                      and off_labels >= INCOMPLETE_LABELS else "")
        if best < classical + MARGIN:
            limits.append(f"- {row['source']}: the model ({best:.3f} at best) does not beat the classical "
                          f"baseline ({classical:.3f}) by {MARGIN}; labels: {row['labels_made_by']}."
                          + incomplete)
        elif plain < classical + MARGIN:
            limits.append(f"- {row['source']}: only with the default auto-scale does the model beat the "
                          f"classical baseline by {MARGIN} (plain {plain:.3f}, classical {classical:.3f}).")
    return limits or [f"- none: the model beats the classical baseline by {MARGIN} F1@0.5 on every row."]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.generalisation",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=REPO / "assets" / "nuclei" / "nuclei.json")
    parser.add_argument("--out", type=Path, default=None,
                        help="default: generalisation.json beside the model")
    args = parser.parse_args(argv)
    metadata = load_metadata(args.model)
    segmenters = {v: Segmenter.from_path(variant_path(args.model, v)) for v in VARIANTS}
    params = baseline_params(metadata)
    print(f"classical baseline parameters (training split): {params.to_dict()}")
    rows = []
    for source in evaluation_sources(metadata):
        row = score_source(source, segmenters, params)
        row["int8_f1_by_postprocess_resolution"] = postprocess_resolution_scores(source, segmenters["int8"])
        rows.append(row)
        print(f"{row['source']}: classical {row['scores']['classical']['f1@0.5']:.3f}, "
              + ", ".join(f"{k} {v['f1@0.5']:.3f}" for k, v in row["scores"].items() if k != "classical"))
    cpu = machine()
    results = {"model": metadata.name, "classical_params": params.to_dict(), "cpu": cpu, "rows": rows}
    write_results(args.out or args.model.with_name("generalisation.json"), results,
                  markdown_table(rows, params, cpu))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

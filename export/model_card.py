"""A model card (Markdown) from the files the pipeline wrote: nothing in it is typed by hand.

Reads NAME.json (metadata, training command), evaluation.json (validation scores from
training), NAME.export.json (per-variant accuracy, size, latency) and the dataset's
SOURCE.md, and writes MODEL_CARD.md beside the model. Export writes it; to rewrite one:
`python -m export.model_card assets/NAME`.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from unet.data.splits import recorded_data_folder, recorded_folders
from unet.runtime.atomic import atomic_write_text
from unet.runtime.evaluation import format_scores
from unet.runtime.metadata import ModelMetadata
from unet.runtime.variants import KERAS, litert


def _portable_path(path: Path) -> str:
    """`path` relative to the working folder when inside it, so the card reads the same on any clone."""
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return resolved.as_posix()


def initial_weights_chain(training: dict) -> list[dict]:
    """The models a run started from, newest first: its initial weights, theirs, and so on."""
    chain = []
    record = training.get("initial_weights")
    while record:
        chain.append(record)
        record = record.get("initial_weights")
    return chain


def _copy_into(model_dir: Path, export_command: str) -> list[str]:
    """The `cp` that brings the files of a model exported elsewhere (its run folder) into `model_dir`."""
    arguments = shlex.split(export_command)
    if "--model" not in arguments[:-1]:
        return []
    run_dir = Path(arguments[arguments.index("--model") + 1]).parent
    if run_dir.resolve() == model_dir.resolve():
        return []
    return [f"cp {run_dir.as_posix()}/* {_portable_path(model_dir)}/"]


def _scores_line(accuracy: dict, mode: str) -> str:
    line = format_scores(accuracy)
    if mode == "semantic":
        object_classes = list(accuracy["per_class"].values())[1:]
        mean_objects = sum(row["iou"] for row in object_classes) / len(object_classes)
        line += f", mean IoU over the non-background classes {mean_objects:.4f}"
    return line


def _source_notes(training: dict) -> str:
    """Each training folder's SOURCE.md, headings moved under the card's "Data" section."""
    notes = []
    for recorded in recorded_folders(training):
        folder = recorded_data_folder(recorded)
        if folder is not None and (folder / "SOURCE.md").is_file():
            text = (folder / "SOURCE.md").read_text().strip()
            lines = text.splitlines()
            notes.append("\n".join("##" + line if line.startswith("#") else line for line in lines))
    return "\n\n".join(notes)


def render_model_card(metadata: ModelMetadata, report: dict, export_command: str, model_dir: Path) -> str:
    training = metadata.training
    source_note = _source_notes(training)
    if not source_note and "synthetic" in training:
        source_note = f"Synthetic data: `unet.data.synthetic.make_dataset` with {training['synthetic']}."
    elif not source_note and training.get("dataset"):
        source_note = (f"Dataset `{training['dataset']}`: `python -m unet.datasets fetch "
                       f"{training['dataset']}` rebuilds it, with its provenance in SOURCE.md.")
    height, width = metadata.input_size
    lines = [
        f"# Model card: {metadata.name}",
        "",
        metadata.description,
        "",
        f"- Task: {metadata.mode} segmentation; classes: {', '.join(metadata.class_names)}.",
        f"- Input: {height}x{width}x{metadata.channels}, {metadata.normalisation.method} normalisation "
        f"({metadata.normalisation.low}th to {metadata.normalisation.high}th percentile per image); "
        "images of other sizes are resized in and out (or tiled with `--tile`).",
        f"- Architecture: {training.get('architecture')}, loss {training.get('loss')}, best epoch "
        f"{training.get('best_epoch')} of at most {training.get('epochs')}, seed {training.get('seed')}.",
        f"- Training images: {len(training.get('train_stems', []))}; validation images: "
        f"{len(training.get('validation_stems', []))} (never used for training or checkpoint weights, "
        "used to pick the best epoch).",
    ]
    if "border_weight" in training:
        border = training["border_weight"]
        lines.append(f"- Loss weighted by the U-Net paper's border map: w0 {border['w0']:g}, sigma "
                     f"{border['sigma_px']:g} px of the training images.")
    starts = initial_weights_chain(training)
    model_path = _portable_path(model_dir / report["model"])
    for position, record in enumerate(starts):
        lines.append(f"- {'That run started' if position else 'Started'} from the weights of "
                     f"`{record['path']}` (SHA-256 {record['sha256'][:12]}...).")
    if metadata.instance is not None:
        lines.append(f"- Instance post-processing: {metadata.instance}, in model-input pixels.")
    if metadata.object_diameter is not None:
        lines.append(f"- Trained object diameter: {metadata.object_diameter} px at the model input. The "
                     "edge runner and `unet.evaluate` auto-scale by default (a first pass at the image's "
                     "own resolution measures the objects); `--diameter PX` gives the size, `--resize` "
                     "squeezes the whole image into the model input instead.")
    datasets = training.get("dataset") or []
    datasets = [datasets] if isinstance(datasets, str) else datasets
    lines += ["", "## Data", "", source_note, "", "## Reproduce", "", "```bash",
              *[f"python -m unet.datasets fetch {name}" for name in datasets],
              *[record["command"] for record in reversed(starts) if record.get("command")],
              training.get("command", "make models   # this model's training line is in the Makefile"),
              *([training.get("tune_command", f"python -m unet.tune {model_path}")]
                if training.get("tuned_on") else []),
              export_command.strip(),
              *_copy_into(model_dir, export_command),
              *(["python -m bench.generalisation"] if (model_dir / "generalisation.md").is_file() else []),
              "```", "",
              "## Validation results (float and quantised)", ""]
    keras_accuracy = report["keras"].get("accuracy")
    if keras_accuracy:
        lines.append(f"- {KERAS.label}: {_scores_line(keras_accuracy, metadata.mode)}.")
    for variant, row in report["variants"].items():
        if "accuracy" in row:
            agreement = row["agreement_with_keras"]
            lines.append(
                f"- {litert(variant).label}: {_scores_line(row['accuracy'], metadata.mode)}; agrees with "
                f"Keras on {100 * agreement['pixel_agreement']:.2f}% of pixels."
            )
    generalisation = model_dir / "generalisation.md"
    if generalisation.is_file():
        lines += ["", "## Generalisation: sources and settings it never trained on", "",
                  generalisation.read_text().strip()]
    lines += ["", "## Files, sizes and latency", "",
              "| file | size | p50 ms, all threads | p50 ms, 1 thread |", "|---|---:|---:|---:|"]
    latency = report.get("latency", {})
    keras_latency = latency.get(KERAS.id, {}).get("p50_ms")
    lines.append(f"| {report['keras']['file']} | {report['keras']['size_bytes'] / 1024:.0f} KiB | "
                 f"{keras_latency:.2f} | – |" if keras_latency else
                 f"| {report['keras']['file']} | {report['keras']['size_bytes'] / 1024:.0f} KiB | – | – |")
    for variant, row in report["variants"].items():
        all_threads = latency.get(litert(variant).id, {}).get("p50_ms", float("nan"))
        one_thread = latency.get(litert(variant, 1).id, {}).get("p50_ms", float("nan"))
        lines.append(
            f"| {row['file']} | {row['size_bytes'] / 1024:.0f} KiB | {all_threads:.2f} | {one_thread:.2f} |"
        )
    lines += ["", f"Latency: batch 1, model call only, on the {report['machine']['cpus']}-thread x86 "
              "machine that exported it; not Raspberry Pi numbers. Full export report: "
              f"`{metadata.name}.export.md`.", ""]
    return "\n".join(lines)


def write_model_card(model_dir: Path, metadata: ModelMetadata, report: dict, export_command: str) -> Path:
    path = model_dir / "MODEL_CARD.md"
    atomic_write_text(path, render_model_card(metadata, report, export_command, model_dir))
    return path


def load_report(path: Path) -> dict:
    return json.loads(path.read_text())


def main(argv: list[str] | None = None) -> int:
    """Rewrite MODEL_CARD.md of each model folder given, from its metadata and export report."""
    import sys

    from unet.runtime.metadata import load_metadata, model_metadata_files

    for folder in map(Path, argv if argv is not None else sys.argv[1:]):
        for metadata_path in model_metadata_files(folder.parent):
            if metadata_path.parent != folder:
                continue
            metadata = load_metadata(metadata_path)
            report = load_report(metadata_path.with_name(f"{metadata_path.stem}.export.json"))
            command = report.get("command", "python export/to_tflite.py")
            print(f"wrote {write_model_card(folder, metadata, report, command)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The export report: what an export measured, as JSON for machines and Markdown for the model card."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from unet.runtime.atomic import atomic_write_text
from unet.runtime.metadata import ModelMetadata
from unet.runtime.variants import BROWSER_VARIANT, KERAS, PORTABLE_VARIANT, QUANTISED_VARIANTS, litert


@dataclass
class ExportReport:
    """What an export measured, each field filled by one step; `to_dict` is NAME.export.json.

    variants: one row per converted variant (file, size, accuracy, agreement, graph, ...);
    rewrites, worst_layers, float_layer_search and latency: what those steps found (None: not
    run); checks: the gate's verdict (GateVerdict.record).
    """

    model: str
    command: str
    tensorflow: str
    machine: dict
    held_out: dict
    keras: dict
    variants: dict[str, dict] = field(default_factory=dict)
    rewrites: dict | None = None
    worst_layers: list[dict] | None = None
    float_layer_search: dict | None = None
    latency: dict | None = None
    checks: dict | None = None

    def to_dict(self) -> dict:
        return {key: value for key, value in dataclasses.asdict(self).items() if value is not None}

    @classmethod
    def from_dict(cls, data: dict) -> ExportReport:
        """A report read back from NAME.export.json (fields it lacks stay empty)."""
        known = {f.name for f in dataclasses.fields(cls)}
        defaults = {"command": "", "tensorflow": "", "machine": {}, "held_out": {}, "keras": {}}
        return cls(**{**defaults, **{key: value for key, value in data.items() if key in known}})


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


def _number(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def render_markdown(report: dict, metadata: ModelMetadata) -> str:
    """A Markdown summary of every variant: size, accuracy, agreement, latency, worst layers."""
    held_out = report["held_out"]
    lines = [
        f"# Export report: {report['model']}",
        "",
        f"Task: {metadata.mode} segmentation, classes {', '.join(metadata.class_names)}, input "
        f"{metadata.input_size[0]}x{metadata.input_size[1]}x{metadata.channels}. "
        f"TensorFlow {report['tensorflow']}, {report['machine']['cpus']} CPU threads.",
        f"Held-out images: {held_out['images']} ({held_out['source']}"
        f"{'' if held_out['labelled'] else ', unlabelled: agreement only'}).",
        "",
        "| variant | size | vs float32 | mean IoU | foreground IoU | pixel agreement with Keras "
        "| IoU with Keras | p50 ms (all threads) | p95 ms | p50 ms (1 thread) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    latency = report.get("latency", {})
    keras = report["keras"]
    keras_accuracy = keras.get("accuracy", {})
    keras_latency = latency.get(KERAS.id, {})
    lines.append(
        f"| {KERAS.label} | {keras['size_bytes'] / 1024:.0f} KiB | – | "
        f"{_number(keras_accuracy.get('mean_iou'))} | {_number(keras_accuracy.get('foreground_iou'))} "
        f"| – | – | {_number(keras_latency.get('p50_ms'), 2)} | "
        f"{_number(keras_latency.get('p95_ms'), 2)} | – |"
    )
    for variant, row in report["variants"].items():
        accuracy = row.get("accuracy", {})
        agreement = row["agreement_with_keras"]
        all_threads = latency.get(litert(variant).id, {})
        one_thread = latency.get(litert(variant, 1).id, {})
        lines.append(
            f"| {litert(variant).label} | {row['size_bytes'] / 1024:.0f} KiB | "
            f"{_number(row.get('size_ratio_to_float32'), 3)} | {_number(accuracy.get('mean_iou'))} | "
            f"{_number(accuracy.get('foreground_iou'))} | {_percent(agreement['pixel_agreement'])} | "
            f"{_number(agreement['mean_iou'])} | {_number(all_threads.get('p50_ms'), 2)} | "
            f"{_number(all_threads.get('p95_ms'), 2)} | {_number(one_thread.get('p50_ms'), 2)} |"
        )
    if metadata.mode == "instance":
        lines += ["", "| variant | F1@0.5 | DSB score | PQ | matched-instance F1 with Keras | count |",
                  "|---|---:|---:|---:|---:|---:|"]
        rows = [(KERAS.label, keras_accuracy, {})]
        rows += [(litert(v).label, r.get("accuracy", {}), r["agreement_with_keras"])
                 for v, r in report["variants"].items()]
        for name, accuracy, agreement in rows:
            instance = accuracy.get("instance", {})
            lines.append(
                f"| {name} | {_number(instance.get('f1@0.5'))} | {_number(instance.get('dsb_score'))} | "
                f"{_number(instance.get('panoptic_quality'))} | "
                f"{_number(agreement.get('matched_instance_f1'))} | {instance.get('predicted_count', '–')} |"
            )
    for variant, row in report["variants"].items():
        if "accuracy" in row:
            per_class = row["accuracy"]["per_class"]
            cells = ", ".join(
                f"{name} IoU {v['iou']:.4f} / Dice {v['dice']:.4f}" for name, v in per_class.items()
            )
            lines.append(f"\n{variant} per class: {cells}.")
        quantisation = row["input"]
        if quantisation["dtype"] in QUANTISED_VARIANTS:
            lines.append(
                f"{variant} input {quantisation['dtype']} scale {quantisation['scale']:.6g} zero-point "
                f"{quantisation['zero_point']}; output {row['output']['dtype']} scale "
                f"{row['output']['scale']:.6g} zero-point {row['output']['zero_point']}."
            )
    network_agreement = report["variants"].get(PORTABLE_VARIANT, {}).get("agreement_with_network")
    if network_agreement:
        lines.append(
            f"\n{PORTABLE_VARIANT} takes 8-bit RGB and normalises it in its graph, in front of "
            f"{BROWSER_VARIANT}'s network byte for byte. What that costs on the held-out images, "
            f"against {BROWSER_VARIANT}: pixel agreement {network_agreement['pixel_agreement']:.2%}, "
            f"mean IoU {network_agreement['mean_iou']:.4f}. It comes from the input being 8-bit and "
            "resized before normalisation (the runtime normalises first), and from float32 percentiles.")
    rewrites = report.get("rewrites", {})
    if rewrites.get("layers"):
        lines += ["", f"Rewritten before conversion ({len(rewrites['layers'])} layers, outputs identical to "
                  f"the original: largest difference {rewrites['max_abs_difference']:g}; `--no-rewrite` "
                  "turns this off):", ""]
        lines += [f"- `{r['layer']}`: {r['was']} => {r['now']}" for r in rewrites["layers"]]
    elif rewrites and not rewrites.get("enabled"):
        lines += ["", "Layer rewrites were turned off (`--no-rewrite`)."]
    graphs = {variant: row["graph"] for variant, row in report["variants"].items() if "graph" in row}
    if graphs:
        lines += ["", "Graph health (as LiteRT loads each file with XNNPACK; LiteRT's Python API has no "
                  "per-op profiler, so the ops outside XNNPACK are named instead of timed):", "",
                  "| variant | ops | XNNPACK partitions | ops outside XNNPACK | op counts |",
                  "|---|---:|---:|---|---|"]
        for variant, graph in graphs.items():
            outside = ", ".join(f"{count} {op}" for op, count in graph["outside_delegate"].items()) or "none"
            counts = ", ".join(f"{op} {count}" for op, count in graph["op_counts"].items())
            lines.append(f"| {variant} | {sum(graph['op_counts'].values())} | {graph['partitions']} | "
                         f"{outside} | {counts} |")
        for variant, graph in graphs.items():
            if graph.get("by_design"):
                by_design = ", ".join(f"{count} {op}" for op, count in graph["by_design"].items())
                lines.append(f"\n{variant}: outside XNNPACK by design: {by_design}, "
                             f"{graph['by_design_reason']}.")
            lines += [f"\n**{variant}: {problem}.**" for problem in graph["problems"]]
    search = report.get("float_layer_search")
    if search:
        lines += ["", "Float-layer search (`--search-float-layers`): the worst-quantised tensors kept in "
                  f"float, until the gate holds or int8 grows past {search['max_size_ratio']:.0%} of "
                  f"float32 or {search['max_latency_ratio']:g}x its latency (limit p50 "
                  f"{_number(search['limits']['p50_ms'], 2)} ms):",
                  "", "| tensors in float | size | p50 ms | IoU drop | gate |", "|---:|---:|---:|---:|---|"]
        for step in search["steps"]:
            verdict = "passes" if step["passed"] else step.get("stopped", "fails")
            if step["size_bytes"] is None:
                lines.append(f"| {len(step['float_tensors'])} | – | – | – | {verdict} |")
                continue
            lines.append(f"| {len(step['float_tensors'])} | {step['size_bytes'] / 1024:.0f} KiB | "
                         f"{step['p50_ms']:.2f} | {step['mean_iou_drop']:.4f} | {verdict} |")
        chosen = search["steps"][-1]
        if chosen["passed"]:
            lines.append("\nKept in float (saved in the metadata as `variants.int8.float_tensors`): "
                         + ", ".join(f"`{t.split(';')[0]}`" for t in chosen["float_tensors"]) + ".")
    if report.get("worst_layers"):
        lines += ["", "Worst layers by quantisation error (RMSE in quantisation steps, "
                  "from TFLite's QuantizationDebugger):", "",
                  "| op | tensor | RMSE / scale | max abs error |", "|---|---|---:|---:|"]
        for layer in report["worst_layers"]:
            tensor = layer["tensor"].split(";")[0]
            lines.append(f"| {layer['op']} | `{tensor}` | {layer['rmse_over_scale']:.3f} | "
                         f"{layer['max_abs_error']:.4g} |")
    failures = report["checks"]["failures"]
    measure = report["checks"].get("measure") or "mean IoU"
    lines += ["", f"Check: quantised {measure} within {report['checks']['max_iou_drop']} of float: "
              + ("FAILED — " + "; ".join(failures) if failures else "passed") + "."]
    lines.append("\nLatency is batch 1 on the machine that exported the model, not on a Raspberry Pi.")
    return "\n".join(lines) + "\n"


def write_report(report: dict, metadata: ModelMetadata, stem_path: Path) -> tuple[Path, Path]:
    """Write `<stem>.json` and `<stem>.md` atomically."""
    json_path = stem_path.with_name(stem_path.name + ".json")
    markdown_path = stem_path.with_name(stem_path.name + ".md")
    atomic_write_text(json_path, json.dumps(report, indent=2) + "\n")
    atomic_write_text(markdown_path, render_markdown(report, metadata))
    return json_path, markdown_path

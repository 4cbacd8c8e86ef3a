"""The accuracy gate: quantised variants may lose at most so much against float, and it says which did not."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from unet.runtime.evaluation import MIN_CLASS_SUPPORT
from unet.runtime.variants import QUANTISED_VARIANTS

if TYPE_CHECKING:
    from export.report import ExportReport


@dataclass(frozen=True)
class GateVerdict:
    """What the accuracy gate decided: each quantised variant's drop, by one measure, and the failures."""

    max_iou_drop: float
    measure: str | None
    drops: dict[str, float]
    failures: list[str]

    def record(self, report: ExportReport) -> None:
        """Write the verdict into the report: each variant's drop and measure, and `checks`."""
        for variant, drop in self.drops.items():
            report.variants[variant].update(mean_iou_drop=drop, gate_measure=self.measure)
        report.checks = {"max_iou_drop": self.max_iou_drop, "failures": self.failures,
                            "measure": self.measure}


def gate(report: ExportReport, max_iou_drop: float, min_pixel_agreement: float = 0.995) -> GateVerdict:
    """Quantised variants that lost more than `max_iou_drop` against float; the report is only read.

    With labels: mean IoU against ground truth, float minus quantised. Without: 1 - mean IoU
    against the float model's masks over the classes with at least MIN_CLASS_SUPPORT of the
    pixels (a near-empty class cannot fail the gate alone), and pixel agreement of at least
    `min_pixel_agreement`.
    """
    keras_accuracy = report.keras.get("accuracy")
    if keras_accuracy is not None:
        measure = "mean IoU against ground truth"
    else:
        measure = (f"mean IoU against the Keras float masks over classes with at least "
                   f"{MIN_CLASS_SUPPORT:.0%} of the pixels")
    failures, drops = [], {}
    for variant, row in report.variants.items():
        if variant not in QUANTISED_VARIANTS:
            continue
        agreed = row["agreement_with_keras"]
        if keras_accuracy is not None:
            drop = keras_accuracy["mean_iou"] - row["accuracy"]["mean_iou"]
        else:
            drop = 1.0 - agreed["supported_mean_iou"]
            if agreed["pixel_agreement"] < min_pixel_agreement:
                failures.append(f"{report.model}: {variant} agrees with float on "
                                f"{agreed['pixel_agreement']:.2%} of pixels (at least "
                                f"{min_pixel_agreement:.1%} needed without labels)")
        drops[variant] = drop
        if drop > max_iou_drop:
            failures.append(
                f"{report.model}: {variant} {measure} is {drop:.4f} below float "
                f"(allowed {max_iou_drop}); try --search-float-layers, or --float-layers with the "
                "worst layers in the report"
            )
    return GateVerdict(max_iou_drop, measure if drops else None, drops, failures)

"""Must show: on touching discs, U-Net + watershed separates what connected components merge."""

import pytest

pytest.importorskip("tensorflow")

from unet.data.synthetic import SyntheticSpec, make_dataset
from unet.runtime.instance_metrics import dataset_instance_scores
from unet.runtime.instances import connected_component_instances
from unet.runtime.segmenter import Segmenter
from unet.training.trainer import TrainConfig, train

DISCS = {"size": (64, 64), "shapes": ("disc",), "dark_fraction": 0.0, "touching": 0.8,
         "radius": (0.12, 0.2), "objects": (3, 6), "overlap": 0.05}


@pytest.mark.slow
def test_watershed_beats_connected_components_on_touching_discs(tmp_path):
    train(TrainConfig(
        out=tmp_path, mode="instance", input_size=64,
        synthetic=SyntheticSpec(count=240, size=(64, 64), dark_fraction=0.0, touching=0.8, radius=(0.12, 0.2),
                                objects=(3, 6)),
        depth=3, base_filters=16, batch_size=16, samples_per_epoch=192, learning_rate=3e-3, epochs=14,
        patience=14, boundary_width=2, min_instance_size=20, verbose=0,
        name="discs",
    ))
    from unet.tune import main as tune_main

    assert tune_main([str(tmp_path / "discs.keras"), "--candidates", "0,3,4,5,6", "--limit", "80"]) == 0
    segmenter = Segmenter.from_path(tmp_path / "discs.keras")
    test_set = make_dataset(SyntheticSpec(count=40, seed=4242, **DISCS))
    truth, watershed, components = [], [], []
    for sample in test_set:
        segmentation = segmenter.segment(sample.image).segmentation
        truth.append(sample.instance_labels)
        watershed.append(segmentation.instance_labels)
        components.append(connected_component_instances(segmentation.class_mask > 0, min_size=20))
    watershed_scores = dataset_instance_scores(truth, watershed)
    baseline_scores = dataset_instance_scores(truth, components)
    touching = sum(int(s.instance_labels.max()) for s in test_set)
    print(f"{touching} discs in 40 images: F1@0.5 watershed {watershed_scores['f1@0.5']:.3f} "
          f"({watershed_scores['predicted_count']} found), connected components "
          f"{baseline_scores['f1@0.5']:.3f} ({baseline_scores['predicted_count']} found)")
    assert watershed_scores["f1@0.5"] >= 0.9
    assert baseline_scores["f1@0.5"] <= watershed_scores["f1@0.5"] - 0.1


def test_tuning_warns_when_the_chosen_value_is_an_edge_of_its_grid():
    from unet.runtime.metadata import InstanceParams
    from unet.training.tuning import at_grid_edge

    def chosen(distance: int, threshold: float) -> InstanceParams:
        return InstanceParams(marker_min_distance=distance, interior_threshold=threshold)

    assert at_grid_edge(chosen(4, 0.6), [0, 3, 4, 5], [0.45, 0.6, 0.75]) == []
    assert at_grid_edge(chosen(0, 0.6), [0, 3, 5], [0.45, 0.6, 0.75]) == []  # 0 is a mode
    [warning] = at_grid_edge(chosen(0, 0.75), [0, 3, 5], [0.45, 0.6, 0.75])
    assert "interior_threshold 0.75 is the largest value tried; larger values" in warning
    [warning] = at_grid_edge(chosen(3, 0.45), [0, 3], [0.45, 0.6])
    assert "interior_threshold 0.45 is the smallest" in warning
    [warning] = at_grid_edge(chosen(5, 0.6), [0, 3, 5], [0.45, 0.6, 0.75])
    assert "marker_min_distance 5 is the largest" in warning
    assert at_grid_edge(chosen(3, 0.6), [3], [0.6]) == []  # a single value is no grid

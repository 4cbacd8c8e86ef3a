"""Known-answer tests for the numpy scores used by evaluation, export and the app."""

import numpy as np
import pytest

from unet.runtime.evaluation import agreement
from unet.runtime.metadata import ModelMetadata
from unet.runtime.metrics import confusion_matrix, segmentation_scores
from unet.runtime.preprocess import Segmentation

TARGET = np.array([[0, 0, 1, 1],
                   [0, 0, 1, 1],
                   [2, 2, 0, 0],
                   [2, 2, 0, 0]])
PREDICTED = np.array([[0, 0, 1, 0],
                      [0, 0, 1, 1],
                      [2, 1, 0, 0],
                      [2, 2, 0, 0]])


def test_confusion_matrix_counts_every_pixel_once():
    confusion = confusion_matrix(TARGET, PREDICTED, 3)
    assert confusion.tolist() == [[8, 0, 0],
                                  [1, 3, 0],
                                  [0, 1, 3]]


def test_per_class_iou_dice_and_means():
    scores = segmentation_scores(TARGET, PREDICTED, 3)
    # class 0: TP 8, union 8 + 1 = 9; class 1: TP 3, union 4 + 1 = 5; class 2: TP 3, union 4
    assert scores.per_class_iou == pytest.approx([8 / 9, 3 / 5, 3 / 4])
    assert scores.per_class_dice == pytest.approx([16 / 17, 6 / 8, 6 / 7])
    assert scores.mean_iou == pytest.approx((8 / 9 + 3 / 5 + 3 / 4) / 3)
    assert scores.pixel_accuracy == pytest.approx(14 / 16)
    assert scores.support == [8, 4, 4]


def test_class_absent_from_target_and_prediction_is_not_nan_and_not_averaged():
    target = np.array([[0, 1], [1, 1]])
    scores = segmentation_scores(target, target, 3)
    assert scores.per_class_iou == [1.0, 1.0, 1.0]
    assert scores.per_class_dice == [1.0, 1.0, 1.0]
    assert scores.support == [1, 3, 0]
    assert scores.mean_iou == 1.0
    assert not np.isnan(scores.mean_dice)


def test_class_predicted_but_absent_from_target_scores_zero():
    target = np.zeros((2, 2), dtype=int)
    predicted = np.array([[0, 1], [0, 0]])
    scores = segmentation_scores(target, predicted, 2)
    assert scores.per_class_iou == pytest.approx([3 / 4, 0.0])
    assert scores.mean_iou == pytest.approx(3 / 8)


def test_empty_images_score_perfectly():
    empty = np.zeros((0, 0), dtype=int)
    scores = segmentation_scores(empty, empty, 2)
    assert scores.mean_iou == 1.0 and scores.pixel_accuracy == 1.0


def test_labels_out_of_range_are_refused_with_the_range():
    with pytest.raises(ValueError, match=r"outside 0..1"):
        confusion_matrix(np.array([0, 2]), np.array([0, 1]), 2)


def test_mask_agreement_between_backends():
    metadata = ModelMetadata(input_size=(4, 4), channels=1, class_names=["a", "b", "c"])
    [first, second] = [Segmentation(np.empty(0), mask.astype(np.uint8)) for mask in (TARGET, PREDICTED)]
    agreed = agreement(metadata, [first], [second])
    assert agreed["pixel_agreement"] == pytest.approx(14 / 16)


def test_touching_pairs_count_as_split_only_when_both_nuclei_are_found_apart():
    from unet.runtime.instance_metrics import touching_pairs, touching_pairs_split

    truth = np.zeros((12, 20), np.int32)
    truth[2:8, 2:6], truth[2:8, 6:10] = 1, 2  # touching
    truth[2:8, 13:17] = 3  # alone
    assert touching_pairs(truth).tolist() == [[1, 2]]
    assert touching_pairs_split(truth, truth) == (1, 1)
    merged = np.where(truth == 2, 1, truth)
    assert touching_pairs_split(truth, merged) == (0, 1)
    assert touching_pairs_split(np.zeros_like(truth), truth) == (0, 0)
    assert touching_pairs_split(truth, np.zeros_like(truth)) == (0, 1)

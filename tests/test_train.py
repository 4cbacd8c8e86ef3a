"""Training end to end: it learns, writes every artefact, and never half-writes a model."""

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from unet.data.synthetic import SyntheticSpec
from unet.training.trainer import TrainConfig, train

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_simple_unet_learns_synthetic_binary_discs(tmp_path):
    config = TrainConfig(
        out=tmp_path, synthetic=SyntheticSpec(count=200, size=(64, 64), dark_fraction=0.0),
        architecture="simple", input_size=64, batch_size=16, samples_per_epoch=160,
        learning_rate=1e-2, epochs=8, patience=8, verbose=0,
    )
    started_wall, started_cpu = time.perf_counter(), time.process_time()
    evaluation = train(config)
    wall, cpu = time.perf_counter() - started_wall, time.process_time() - started_cpu
    print(f"simple_unet: validation mean IoU {evaluation['mean_iou']:.3f}, foreground IoU "
          f"{evaluation['foreground_iou']:.3f}, {wall:.1f} s wall, {cpu:.1f} s CPU")
    assert evaluation["mean_iou"] >= 0.85


def run_train_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "unet.train", *args], cwd=cwd, capture_output=True, text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"},
        timeout=600,
    )


@pytest.mark.slow
def test_train_cli_leaves_every_artefact(tmp_path):
    out = tmp_path / "x"
    result = run_train_cli("--synthetic", "--epochs", "2", "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr[-2000:]
    for name in ("model.keras", "model.json", "history.csv", "curves.png", "evaluation.json"):
        assert (out / name).stat().st_size > 0, name
    assert not list(out.glob(".*")), "staging files left behind"
    from unet.runtime.metadata import load_metadata
    from unet.training.models import load_model

    metadata = load_metadata(out / "model.json")
    assert metadata.input_size == (128, 128) and metadata.channels == 1
    assert metadata.class_names == ["background", "disc"]
    model = load_model(str(out / "model.keras"))
    assert model.output_shape == (None, 128, 128, 1)
    history = (out / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch") and len(history) == 3
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert 0.0 <= evaluation["mean_iou"] <= 1.0 and evaluation["split"] == "validation"


def test_train_cli_bad_dataset_is_one_clear_line(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    result = run_train_cli("--data", str(tmp_path), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "no image files" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_failed_run_keeps_the_previous_model_and_the_same_command_resumes(tmp_path, monkeypatch):
    previous = tmp_path / "model.keras"
    previous.write_bytes(b"the good model")
    from unet.training import loop

    original_epoch = loop.Training.run_epoch

    def run_epoch_with_failure(self):
        if self.epoch == 1:
            raise RuntimeError("power cut")
        original_epoch(self)

    config = TrainConfig(out=tmp_path, synthetic=SyntheticSpec(count=16, size=(32, 32)), input_size=32, depth=2,
                         base_filters=4, epochs=3, samples_per_epoch=8, verbose=0)
    monkeypatch.setattr(loop.Training, "run_epoch", run_epoch_with_failure)
    with pytest.raises(RuntimeError, match="power cut"):
        train(config)
    assert previous.read_bytes() == b"the good model"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model.training", "model.keras"]
    monkeypatch.setattr(loop.Training, "run_epoch", original_epoch)
    train(config)
    rows = (tmp_path / "history.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["0", "1", "2"]
    assert not (tmp_path / ".model.training").exists()


@pytest.mark.slow
def test_each_input_pipeline_is_built_once_a_run_not_once_an_epoch(tmp_path, monkeypatch):
    # A tf.data pipeline built every epoch kept its memory: 680 MB an epoch on the nuclei recipe.
    from unet.training import loop, trainer

    built = {"train": [], "validation": 0}
    original_stream, original_validation = trainer.train_stream, loop.Training._validation_pipeline

    def counted_stream(*args):
        stream = original_stream(*args)

        def build(first_batch, *rest):
            built["train"].append(first_batch)
            return stream(first_batch, *rest)

        return build

    def counted_validation(self, context):
        built["validation"] += 1
        return original_validation(self, context)

    monkeypatch.setattr(trainer, "train_stream", counted_stream)
    monkeypatch.setattr(loop.Training, "_validation_pipeline", counted_validation)
    config = TrainConfig(out=tmp_path, synthetic=SyntheticSpec(count=16, size=(32, 32)), input_size=32, depth=2,
                         base_filters=4, epochs=3, patience=3, samples_per_epoch=8, verbose=0)
    train(config)
    rows = (tmp_path / "history.csv").read_text().splitlines()
    assert len(rows) == 4
    assert built == {"train": [0], "validation": 1}


def test_a_leftover_run_with_other_settings_is_refused_in_one_line(tmp_path):
    from unet.training.loop import TrainingState
    from unet.training.trainer import claim_training_state

    state = TrainingState(tmp_path, "model")
    claim_training_state(state, TrainConfig(out=tmp_path, epochs=3))
    claim_training_state(state, TrainConfig(out=tmp_path, epochs=3, verbose=0))
    with pytest.raises(ValueError, match=r"unfinished run with other settings \(epochs, learning_rate\)"):
        claim_training_state(state, TrainConfig(out=tmp_path, epochs=4, learning_rate=0.1))


MIRRORED_SCRIPT = """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from unet.data.synthetic import SyntheticSpec
from unet.training.trainer import TrainConfig, train
import sys
evaluation = train(TrainConfig(out=sys.argv[1], synthetic=SyntheticSpec(count=16, size=(32, 32)), input_size=32,
                               depth=2, base_filters=4, epochs=1, batch_size=4, samples_per_epoch=4,
                               strategy="mirrored", verbose=0))
print("replicas", tf.distribute.MirroredStrategy().num_replicas_in_sync, "iou", evaluation["mean_iou"])
"""


@pytest.mark.slow
def test_mirrored_strategy_trains_one_step_on_two_logical_cpus(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT, str(tmp_path)], cwd=REPO, capture_output=True,
        text=True, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "replicas 2" in result.stdout
    assert (tmp_path / "model.keras").is_file()


@pytest.mark.parametrize(("tf_config", "message"), [
    (None, "error: --strategy multiworker needs TF_CONFIG in the environment"),
    ("{not json", "error: TF_CONFIG is not JSON"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}',
     "error: TF_CONFIG's task index 3 is not one of the 1 worker addresses"),
    ('{"cluster": {}, "task": {"type": "worker", "index": 0}}', "error: TF_CONFIG has no cluster"),
])
def test_multiworker_without_a_usable_tf_config_is_one_line_before_tensorflow_loads(tmp_path, tf_config, message):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "0"}
    if tf_config is not None:
        env["TF_CONFIG"] = tf_config
    result = subprocess.run([sys.executable, "-m", "unet.train", "--synthetic", "--strategy", "multiworker",
                             "--out", str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True, env=env,
                            timeout=120)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(message)
    assert not (tmp_path / "out").exists()


def test_train_help_documents_multiworker_and_the_checkpoint_interval():
    result = run_train_cli("--help")
    help_text = " ".join(result.stdout.split())
    assert "multiworker: the hosts TF_CONFIG names" in help_text
    assert "--checkpoint-every STEPS" in help_text and "resumes from the last one" in help_text


def test_simple_arch_refuses_multiclass_data(tmp_path):
    config = TrainConfig(out=tmp_path, synthetic=SyntheticSpec(count=4, size=(32, 32), shapes=("disc", "square")),
                         architecture="simple", input_size=32, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="simple_unet is binary .* 3 classes"):
        train(config)
    assert np.all([not p.name.endswith(".keras") for p in tmp_path.iterdir()])


@pytest.mark.slow
def test_border_weight_trains_an_instance_model_and_is_recorded_in_its_metadata(tmp_path):
    from unet.runtime.metadata import load_metadata

    out = tmp_path / "weighted"
    result = run_train_cli("--synthetic", "--synthetic-count", "16", "--synthetic-touching", "0.8",
                           "--mode", "instance", "--input-size", "64", "--depth", "2", "--base-filters", "8",
                           "--epochs", "1", "--batch-size", "4", "--border-weight", "10",
                           "--border-sigma", "3", "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr[-2000:]
    training = load_metadata(out / "model.json").training
    assert training["border_weight"] == {"w0": 10.0, "sigma_px": 3.0}
    loss = float((out / "history.csv").read_text().splitlines()[1].split(",")[2])
    assert np.isfinite(loss) and loss > 0


def test_a_negative_border_weight_is_one_clear_line(tmp_path):
    result = run_train_cli("--synthetic", "--synthetic-count", "8", "--mode", "instance", "--input-size", "32",
                           "--border-weight", "-1", "--out", str(tmp_path / "x"))
    assert result.returncode != 0
    assert "border weight must be >= 0" in result.stderr and "Traceback" not in result.stderr


def test_init_weights_grow_a_three_class_head_into_a_core_class_that_starts_as_the_interior(tmp_path):
    from unet.runtime.errors import UserError
    from unet.runtime.instances import BACKGROUND, BOUNDARY, CORE, INTERIOR
    from unet.training.models import build_unet
    from unet.training.trainer import load_initial_weights

    three = build_unet((32, 32, 1), num_classes=3, depth=2, base_filters=4)
    tensor = np.random.default_rng(0).random((1, 32, 32, 1), dtype=np.float32)
    for layer in three.layers:  # batch norm statistics away from their initial values
        if layer.weights:
            layer.set_weights([w + np.random.default_rng(1).normal(0, 0.1, w.shape).astype(w.dtype)
                               if "variance" not in v.path else w for w, v in zip(layer.get_weights(),
                                                                               layer.weights, strict=True)])
    three.save(tmp_path / "three.keras")
    four = build_unet((32, 32, 1), num_classes=4, depth=2, base_filters=4)
    load_initial_weights(four, tmp_path / "three.keras")
    old, new = three(tensor).numpy()[0], four(tensor).numpy()[0]
    np.testing.assert_allclose(new[..., CORE], new[..., INTERIOR], rtol=1e-5)
    np.testing.assert_allclose(new[..., BACKGROUND] / new[..., BOUNDARY], old[..., BACKGROUND] / old[..., BOUNDARY],
                               rtol=1e-4)
    with pytest.raises(UserError, match="does not fit the model these options build.*layers"):
        load_initial_weights(build_unet((32, 32, 1), num_classes=3, depth=3, base_filters=4), tmp_path / "three.keras")
    with pytest.raises(UserError, match="does not fit the model these options build.*layer"):
        load_initial_weights(build_unet((32, 32, 1), num_classes=3, depth=2, base_filters=8), tmp_path / "three.keras")


def test_a_core_class_on_a_semantic_model_is_one_clear_line(tmp_path):
    result = run_train_cli("--synthetic", "--synthetic-count", "8", "--input-size", "32",
                           "--core-fraction", "0.5", "--out", str(tmp_path / "x"))
    assert result.returncode != 0
    assert "--core-fraction 0.5 needs --mode instance" in result.stderr and "Traceback" not in result.stderr


def test_an_instance_models_validation_sees_its_images_at_the_trained_scale_in_windows():
    from unet.runtime.metadata import ModelMetadata
    from unet.training.pipeline import validation_arrays
    from unet.training.trainer import TrainConfig, middle_scale

    metadata = ModelMetadata(input_size=(8, 8), channels=1, class_names=["background", "object"])
    image = np.zeros((6, 6), np.float32)
    image[:3] = 1.0
    target = (image > 0).astype(np.uint8)
    config = TrainConfig(out=Path("unused"), input_size=8, scale_range=(0.6, 1.3))
    assert middle_scale((20, 30), config) == pytest.approx(np.sqrt(0.6 * 1.3))
    # Never below the crop size: both ends of the range clip to 8/6 for a 6 px image.
    assert middle_scale(image.shape, config) == pytest.approx(8 / 6)
    inputs, targets = validation_arrays([image], [target], metadata, scales=[2.0])
    # 6 px at scale 2 is 12 px: windows start at 0 and 4 on each axis.
    assert inputs.shape == (4, 8, 8, 1) and targets.shape == (4, 8, 8, 1)
    np.testing.assert_array_equal(targets[0, :, 0, 0], [1, 1, 1, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(targets[2, :, 0, 0], [1, 1, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(inputs[..., 0] > 0.5, targets[..., 0] > 0)
    whole_inputs, whole_targets = validation_arrays([image], [target], metadata)
    assert whole_inputs.shape == whole_targets.shape == (1, 8, 8, 1)
    with pytest.raises(ValueError, match=r"smaller than the model input"):
        validation_arrays([image], [target], metadata, scales=[1.0])

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
def test_failed_run_keeps_the_previous_model(tmp_path, monkeypatch):
    previous = tmp_path / "model.keras"
    previous.write_bytes(b"the good model")
    import keras

    class Explode(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("power cut")

    original_fit = keras.Model.fit

    def fit_with_failure(self, *args, **kwargs):
        kwargs["callbacks"] = [*kwargs.get("callbacks", []), Explode()]
        return original_fit(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", fit_with_failure)
    config = TrainConfig(out=tmp_path, synthetic=SyntheticSpec(count=16, size=(32, 32)), input_size=32, depth=2,
                         base_filters=4, epochs=3, samples_per_epoch=8, verbose=0)
    with pytest.raises(RuntimeError, match="power cut"):
        train(config)
    assert previous.read_bytes() == b"the good model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]


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


def test_multiworker_strategy_is_refused_in_one_line_naming_the_upstream_bug(tmp_path):
    result = run_train_cli("--synthetic", "--strategy", "multiworker", "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --strategy multiworker: Keras 3's Model.fit does not run under TensorFlow's "
        "MultiWorkerMirroredStrategy (keras-team/keras#20585); train on one host with --strategy mirrored"
    ]
    assert not (tmp_path / "out").exists()


def test_simple_arch_refuses_multiclass_data(tmp_path):
    config = TrainConfig(out=tmp_path, synthetic=SyntheticSpec(count=4, size=(32, 32), shapes=("disc", "square")),
                         architecture="simple", input_size=32, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="simple_unet is binary .* 3 classes"):
        train(config)
    assert np.all([not p.name.endswith(".keras") for p in tmp_path.iterdir()])

"""`import unet` and the runtime layer never import TensorFlow (the Pi and the app's LiteRT path)."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_runtime_layer_imports_without_tensorflow():
    code = ("import sys, unet, unet.runtime, unet.preprocess, unet.overlay, unet.compare, unet.instances; "
            "loaded = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')]; "
            "print(loaded); assert not loaded")
    completed = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                               timeout=120)
    assert completed.returncode == 0, completed.stdout + completed.stderr

"""unet-edge: U-Net segmentation that trains on a CPU and runs on a Raspberry Pi.

The pipeline, one module per step:
    imageio -> preprocess -> (models, losses, pipeline, train) -> runtime -> postprocess -> overlay

`import unet` and the runtime layer never import TensorFlow; the modules that need it
(models, losses, pipeline, train, evaluate) import it themselves.
"""

__version__ = "0.1.0"

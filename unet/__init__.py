"""unet-edge: U-Net segmentation that trains on a CPU and runs on a Raspberry Pi.

The layers, in pipeline order:
    unet/data/       datasets: folder datasets, synthetic data, recipes, labelled splits
    unet/training/   Keras: model builders, losses, tf.data pipeline, train, tune
    export/          Keras -> TFLite (float32, float16, int8) with a report
    unet/runtime/    no TensorFlow: decode, metadata, preprocess/postprocess, backends,
                     segmenter, tiling, instances, metrics, overlays, comparison, edge runner
    app.py           the Gradio UI

The commands sit on top: `python -m unet.datasets | unet.train | unet.tune | unet.evaluate`.
Only unet/training/ (and export/, but for its edge runner) imports TensorFlow; everything else
runs where TensorFlow is not installed, which tests/test_imports.py checks for every module.
"""

__version__ = "0.1.0"

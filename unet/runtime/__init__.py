"""The TensorFlow-free runtime: everything between an image file and a mask, for every backend.

    image file -> imageio -> preprocess -> backends -> postprocess -> instances -> overlay
                               (segmenter runs these steps; tiling for large images)

Keras (a lazy import), LiteRT and tflite-runtime are backends that only run a tensor; the
metadata JSON (metadata.py) drives everything else. No module here imports TensorFlow.
"""

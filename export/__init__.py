"""Keras -> TFLite export (TensorFlow) and the command-line edge runner (TensorFlow-free).

    to_tflite.py      python export/to_tflite.py: convert, score, measure, gate, commit
    convert.py        SavedModel + TFLiteConverter, one function per variant; QuantizationDebugger
    report.py         the export report (JSON and Markdown)
    model_card.py     MODEL_CARD.md from the files the pipeline wrote
    segment_edge.py   python export/segment_edge.py: the Raspberry Pi runner (unet.runtime.edge)
"""

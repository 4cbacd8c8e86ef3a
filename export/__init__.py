"""Keras -> TFLite export (TensorFlow) and the command-line edge runner (TensorFlow-free).

    to_tflite.py      python export/to_tflite.py: convert, score, measure, gate, commit
    rewrite.py        layers whose TFLite lowering XNNPACK cannot run, rewritten before conversion
    convert.py        SavedModel + TFLiteConverter, one function per variant; QuantizationDebugger
    graph_health.py   op counts, XNNPACK partitions, ops outside the delegate
    report.py         the export report (JSON and Markdown)
    model_card.py     MODEL_CARD.md from the files the pipeline wrote
    segment_edge.py   python export/segment_edge.py: the Raspberry Pi runner (unet.runtime.edge)
"""

"""Keras -> TFLite export: everything here needs TensorFlow (the edge runner is `unet.segment`).

    to_tflite.py      python export/to_tflite.py: convert, score, measure, gate, commit
    job.py            the export's state: options (every default), what the steps share, a variant
    gate.py           the accuracy gate, a pure function returning its verdict
    float_search.py   mixed precision: the worst-quantised tensors kept in float until the gate holds
    rewrite.py        layers whose TFLite lowering XNNPACK cannot run, rewritten before conversion
    convert.py        SavedModel + TFLiteConverter, one function per variant; QuantizationDebugger
    graph_health.py   op counts, XNNPACK partitions, ops outside the delegate
    report.py         the export report (JSON and Markdown)
    model_card.py     MODEL_CARD.md from the files the pipeline wrote
    portable.py       the portable variant: preprocessing in the graph, in front of int8-float-io
    tflite_metadata.py  TFLite Metadata and the metadata JSON packed into every exported file
"""

"""TFLite Metadata written into every exported file, so a file that travels alone still describes itself.

What goes in (the schema MediaPipe Tasks, the LiteRT support library and Android Studio read):
- the model's name, description and version (the .keras file's SHA-256, so two files made
  from one model say so);
- the input as an image: RGB for a portable or 3-channel file, grey otherwise, with
  NormalizationOptions only where (pixel - mean) / std is exactly what the file expects;
- the output as a segmentation mask, with `labels.txt` (one class name per output channel);
- `SEGMENTER_METADATA` with activation NONE: the models end in softmax or sigmoid already;
- this project's metadata JSON as an associated file (`EMBEDDED_METADATA_FILE`), from which
  `unet.runtime.metadata.load_metadata` reads a file that has no sidecar beside it.

MediaPipe's own writer does not import from its 1.2.2 wheel (it needs a compiled module the
wheel lacks), so the flatbuffers are built here with the schema modules that wheel ships, and
packed as its MetadataPopulator packs them: a `TFLITE_METADATA` buffer in the model, then the
associated files appended as an uncompressed zip.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import flatbuffers

from unet.runtime.errors import UserError
from unet.runtime.instances import seed_class
from unet.runtime.metadata import EMBEDDED_METADATA_FILE, LABELS_FILE, ModelMetadata
from unet.runtime.preprocess import RGB8, input_encoding

METADATA_FIELD = "TFLITE_METADATA"
METADATA_IDENTIFIER = b"M001"
SEGMENTER_FIELD = "SEGMENTER_METADATA"
SEGMENTER_IDENTIFIER = b"V001"
# Custom metadata entries were added to the schema in 1.5.0 (tasks/cc/metadata/metadata_version.cc).
MIN_PARSER_VERSION = "1.5.0"


def model_version(model_path: Path) -> str:
    digest = hashlib.sha256(Path(model_path).read_bytes()).hexdigest()
    return f"{Path(model_path).name} sha256:{digest[:16]}"


def output_labels(metadata: ModelMetadata) -> list[str]:
    """One name per output channel: a 1-channel sigmoid model's channel is its foreground class."""
    return metadata.class_names[-metadata.output_channels:]


def _input_description(metadata: ModelMetadata, encoding: str, dtype: str) -> tuple[str, list | None]:
    """What the input holds, and (mean, std) when (pixel - mean) / std is exactly that."""
    normalisation = metadata.normalisation
    if encoding == RGB8:
        return ("RGB bytes (0-255) at the input size; the graph normalises them "
                f"({normalisation.method} {normalisation.low}-{normalisation.high} for percentile) "
                f"and {'takes their luma' if metadata.channels == 1 else 'keeps RGB'}."), None
    how = (f"per-image percentile normalisation ({normalisation.low} -> 0, {normalisation.high} -> 1, "
           "clipped), which no mean and std express: run unet-edge's preprocess, or use the "
           "portable file" if normalisation.method == "percentile"
           else "pixel / 255 for 8-bit images")
    text = f"{dtype} image in [0, 1] with {metadata.channels} channel(s): {how}."
    exact = normalisation.method == "unit" and dtype == "float32"
    return text, ([0.0], [255.0]) if exact else None


def _schemas():
    try:
        from mediapipe.tasks.metadata import image_segmenter_metadata_schema_py_generated as segmenter_fb
        from mediapipe.tasks.metadata import metadata_schema_py_generated as fb
    except ImportError as error:
        raise UserError("writing TFLite metadata needs the schema modules of MediaPipe's wheel: "
                        "pip install --no-deps -r requirements-mediapipe.txt") from error
    return fb, segmenter_fb


def metadata_flatbuffer(metadata: ModelMetadata, encoding: str, input_dtype: str, version: str) -> bytes:
    fb, segmenter_fb = _schemas()

    description, normalisation = _input_description(metadata, encoding, input_dtype)
    image_input = fb.TensorMetadataT()
    image_input.name = "image"
    image_input.description = description
    image_input.content = fb.ContentT()
    image_input.content.contentPropertiesType = fb.ContentProperties.ImageProperties
    image_input.content.contentProperties = fb.ImagePropertiesT()
    rgb = encoding == RGB8 or metadata.channels == 3
    colour_space = fb.ColorSpaceType.RGB if rgb else fb.ColorSpaceType.GRAYSCALE
    image_input.content.contentProperties.colorSpace = colour_space
    image_input.stats = fb.StatsT()
    if normalisation is not None:
        unit = fb.ProcessUnitT()
        unit.optionsType = fb.ProcessUnitOptions.NormalizationOptions
        unit.options = fb.NormalizationOptionsT()
        unit.options.mean, unit.options.std = normalisation
        image_input.processUnits = [unit]
        image_input.stats.max, image_input.stats.min = [1.0], [0.0]
    elif encoding == RGB8:
        image_input.stats.max, image_input.stats.min = [255.0], [0.0]

    masks = fb.TensorMetadataT()
    masks.name = "segmentation_masks"
    labels = output_labels(metadata)
    masks.description = (
        f"Probabilities (1, h, w, {len(labels)}) of {', '.join(labels)}, after "
        f"{'sigmoid' if len(labels) == 1 else 'softmax'}."
        + (f" Instances: {labels[seed_class(len(labels))]} components seed a watershed over the "
           "foreground, every class but background (unet-edge's instances step)."
           if metadata.mode == "instance" else ""))
    masks.content = fb.ContentT()
    masks.content.contentPropertiesType = fb.ContentProperties.ImageProperties
    masks.content.contentProperties = fb.ImagePropertiesT()
    masks.content.contentProperties.colorSpace = fb.ColorSpaceType.GRAYSCALE
    masks.content.range = fb.ValueRangeT()
    masks.content.range.min, masks.content.range.max = 1, 2
    label_file = fb.AssociatedFileT()
    label_file.name = LABELS_FILE
    label_file.description = "Class names, one per output channel."
    label_file.type = fb.AssociatedFileType.TENSOR_AXIS_LABELS
    masks.associatedFiles = [label_file]

    options = segmenter_fb.ImageSegmenterOptionsT()
    options.activation = segmenter_fb.Activation.NONE
    builder = flatbuffers.Builder(0)
    builder.Finish(options.Pack(builder), SEGMENTER_IDENTIFIER)
    segmenter = fb.CustomMetadataT()
    segmenter.name = SEGMENTER_FIELD
    segmenter.data = bytes(builder.Output())

    subgraph = fb.SubGraphMetadataT()
    subgraph.name = metadata.name
    subgraph.inputTensorMetadata = [image_input]
    subgraph.outputTensorMetadata = [masks]
    subgraph.customMetadata = [segmenter]

    project = fb.AssociatedFileT()
    project.name = EMBEDDED_METADATA_FILE
    project.description = "unet-edge metadata: input size, normalisation, classes, colours, post-processing."
    project.type = fb.AssociatedFileType.UNKNOWN

    model = fb.ModelMetadataT()
    model.name = metadata.name
    model.description = metadata.description or f"{metadata.name}: {metadata.mode} segmentation"
    model.version = version
    model.author = "unet-edge export kit"
    model.subgraphMetadata = [subgraph]
    model.associatedFiles = [project]
    model.minParserVersion = MIN_PARSER_VERSION
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), METADATA_IDENTIFIER)
    return bytes(builder.Output())


def with_tflite_metadata(tflite_bytes: bytes, metadata: ModelMetadata, version: str) -> bytes:
    """The model with its TFLite metadata and associated files (any earlier ones replaced)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(tflite_bytes))
    (graph,) = model.subgraphs
    input_tensor = graph.tensors[graph.inputs[0]]
    input_dtype = flatbuffer_utils.type_to_name(input_tensor.type).lower()
    scales = input_tensor.quantization.scale if input_tensor.quantization else None
    encoding = input_encoding(input_dtype, scales is not None and len(scales) > 0 and scales[0] > 0,
                              int(input_tensor.shape[-1]))
    embedded_json = (json.dumps(metadata.to_dict(), indent=2) + "\n").encode()
    buffer = schema.BufferT()
    buffer.data = metadata_flatbuffer(metadata, encoding, input_dtype, version)
    model.metadata = [entry for entry in (model.metadata or []) if entry.name.decode() != METADATA_FIELD]
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_FIELD
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)
    packed = io.BytesIO(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
    packed.seek(0, io.SEEK_END)
    with zipfile.ZipFile(packed, "a", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(LABELS_FILE, "\n".join(output_labels(metadata)) + "\n")
        archive.writestr(EMBEDDED_METADATA_FILE, embedded_json)
    return packed.getvalue()

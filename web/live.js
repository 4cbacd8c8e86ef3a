// Live camera mode: a preview at camera speed. Each frame is brought to the model's input size by
// the browser's own scaling (drawImage on a canvas of that size, as MediaPipe does), normalised
// there, segmented at model resolution, and drawn as a model-sized overlay that the canvas
// upscales; buffers live across frames. It trades exactness for speed: the percentiles are
// those of the small frame (as the portable model computes them), not of the full image, and
// the masks are model-sized. "Run on this device" and `unetEdge.segment` keep the exact path.

import {instancesFromProbabilities} from './instances.js';
import {overlayPixels} from './overlay.js';
import {argmax, countIds, outputChannels, segmentProbabilities} from './postprocess.js';
import {LUMA_WEIGHTS} from './preprocess.js';

/**
 * @typedef {import('./postprocess.js').ModelMetadata} ModelMetadata
 * @typedef {import('./backend.js').LiteRtJsBackend} LiteRtJsBackend
 * @typedef {{grab: number, normalise: number, model: number, postprocess: number, instances: number,
 *            draw: number, frame: number}} FramePhases  milliseconds per phase of one frame
 */

/**
 * numpy's linear percentile of the values a 256-bin histogram counts, in one pass over the bins.
 * @param {Float64Array | Uint32Array} histogram counts of 0..255
 * @param {number} count the number of values
 * @param {number} percent
 */
export function histogramPercentile(histogram, count, percent) {
  const position = (count - 1) * percent / 100;
  const lowerRank = Math.floor(position);
  const fraction = position - lowerRank;
  let seen = 0;
  let lower = -1;
  for (let value = 0; value < 256; value++) {
    seen += histogram[value];
    if (lower < 0 && seen > lowerRank) lower = value;
    if (seen > lowerRank + 1 || (seen > lowerRank && lowerRank + 1 >= count)) {
      const upper = value;
      return fraction >= 0.5 ? upper - (upper - lower) * (1 - fraction) : lower + (upper - lower) * fraction;
    }
  }
  return lower;
}

/**
 * Model-sized RGBA frame -> the model's tensor, into `tensor`: normalised jointly over R, G and B
 * (percentiles from a histogram, or / 255), then luma for grey models.
 * @param {Uint8ClampedArray} rgba (h*w*4)
 * @param {ModelMetadata} metadata
 * @param {Float32Array} tensor (h*w*C), reused
 * @param {Uint32Array} histogram (256), reused
 */
export function normaliseFrame(rgba, metadata, tensor, histogram) {
  const count = rgba.length / 4;
  const {normalisation, channels} = metadata;
  let low = 0;
  let scale = 1 / 255;
  if (normalisation.method === 'percentile') {
    histogram.fill(0);
    for (let i = 0; i < rgba.length; i += 4) {
      histogram[rgba[i]] += 1;
      histogram[rgba[i + 1]] += 1;
      histogram[rgba[i + 2]] += 1;
    }
    low = histogramPercentile(histogram, 3 * count, normalisation.low);
    const high = histogramPercentile(histogram, 3 * count, normalisation.high);
    scale = high - low > 1e-12 ? 1 / (high - low) : 0;
  }
  const clip = (/** @type {number} */ value) => Math.min(1, Math.max(0, (value - low) * scale));
  for (let p = 0; p < count; p++) {
    const r = clip(rgba[4 * p]);
    const g = clip(rgba[4 * p + 1]);
    const b = clip(rgba[4 * p + 2]);
    if (channels === 1) {
      tensor[p] = r * LUMA_WEIGHTS[0] + g * LUMA_WEIGHTS[1] + b * LUMA_WEIGHTS[2];
    } else {
      tensor[3 * p] = r;
      tensor[3 * p + 1] = g;
      tensor[3 * p + 2] = b;
    }
  }
  return tensor;
}

/** One model's live pipeline, its buffers made once. */
export class LiveSegmenter {
  /**
   * @param {LiteRtJsBackend} backend
   * @param {ModelMetadata} metadata
   */
  constructor(backend, metadata) {
    const [height, width] = metadata.input_size;
    this.backend = backend;
    this.metadata = metadata;
    this.height = height;
    this.width = width;
    this.frame = new OffscreenCanvas(width, height);
    this.frameContext = /** @type {OffscreenCanvasRenderingContext2D} */ (
      this.frame.getContext('2d', {willReadFrequently: true}));
    this.tensor = new Float32Array(height * width * metadata.channels);
    this.histogram = new Uint32Array(256);
    this.overlay = new ImageData(width, height);
    this.channels = outputChannels(metadata);
  }

  /**
   * Segment one frame of `source` and draw it on `canvas` (kept at the model's size; CSS scales it).
   * @param {CanvasImageSource} source a playing video, an image or a canvas
   * @param {HTMLCanvasElement} canvas
   * @param {number} [opacity]
   * @returns {Promise<{phases: FramePhases, segmentation: import('./postprocess.js').Segmentation}>}
   */
  async segmentFrame(source, canvas, opacity) {
    const {width, height, metadata} = this;
    const frameStart = performance.now();
    this.frameContext.drawImage(source, 0, 0, width, height);
    const rgba = this.frameContext.getImageData(0, 0, width, height).data;
    const grabbed = performance.now();
    normaliseFrame(rgba, metadata, this.tensor, this.histogram);
    const normalised = performance.now();
    const probabilities = await this.backend.run(this.tensor);
    const modelled = performance.now();
    let segmentation;
    let classified = modelled;
    if (metadata.mode === 'instance') {
      const classMask = argmax(probabilities, this.channels);
      classified = performance.now();
      const instanceLabels = instancesFromProbabilities(probabilities, height, width, metadata.instance);
      segmentation = {classMask, instanceLabels, height, width, instanceCount: countIds(instanceLabels)};
    } else {
      segmentation = segmentProbabilities(probabilities, metadata, [height, width]);
      classified = performance.now();
    }
    const separated = performance.now();
    const pixels = {data: new Uint8Array(rgba.buffer, rgba.byteOffset, rgba.length), height, width, channels: 4};
    overlayPixels(pixels, segmentation, metadata.class_colours, opacity, this.overlay.data);
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    /** @type {CanvasRenderingContext2D} */ (canvas.getContext('2d')).putImageData(this.overlay, 0, 0);
    const drawn = performance.now();
    return {
      phases: {grab: grabbed - frameStart, normalise: normalised - grabbed, model: modelled - normalised,
        postprocess: classified - modelled, instances: separated - classified, draw: drawn - separated,
        frame: drawn - frameStart},
      segmentation,
    };
  }
}

// Model output -> class mask and instances at the image's size, as segment_probabilities in
// unet/runtime/preprocess.py. Driven by the same metadata JSON.

import {resizeNearest} from './imageio.js';
import {instancesFromProbabilities} from './instances.js';
import {resizeChannels} from './preprocess.js';

/**
 * @typedef {import('./instances.js').InstanceParams} InstanceParams
 * @typedef {{input_size: [number, number], channels: number, class_names: string[],
 *            class_colours: number[][], mode: 'semantic' | 'instance', threshold: number,
 *            instance: InstanceParams, normalisation: import('./preprocess.js').Normalisation,
 *            name: string, variants: Object<string, {file: string}>}} ModelMetadata
 * @typedef {{classMask: Uint8Array, instanceLabels: Int32Array | null, height: number, width: number,
 *            instanceCount: number | null}} Segmentation
 */

/** @param {ModelMetadata} metadata */
export function outputChannels(metadata) {
  return metadata.class_names.length === 2 && metadata.mode === 'semantic' ? 1 : metadata.class_names.length;
}

/**
 * Arg-max over the last axis; the first of equal maxima wins, as numpy's argmax.
 * @param {Float32Array} probabilities (count * channels)
 * @param {number} channels
 */
export function argmax(probabilities, channels) {
  const count = probabilities.length / channels;
  const mask = new Uint8Array(count);
  for (let p = 0; p < count; p++) {
    let best = 0;
    let bestValue = probabilities[p * channels];
    for (let c = 1; c < channels; c++) {
      if (probabilities[p * channels + c] > bestValue) { best = c; bestValue = probabilities[p * channels + c]; }
    }
    mask[p] = best;
  }
  return mask;
}

/** @param {Int32Array} labels */
export function countIds(labels) {
  const seen = new Set();
  for (const id of labels) if (id > 0) seen.add(id);
  return seen.size;
}

/**
 * Probabilities (h, w, K) in model-input pixels -> class mask (and instances) at `size`.
 * Semantic: each channel resized bilinearly as Pillow does, then thresholded or arg-maxed.
 * Instance: classes and instances decided at model resolution, then brought to `size` by nearest.
 * @param {Float32Array} probabilities
 * @param {ModelMetadata} metadata
 * @param {[number, number]} size (height, width) of the image
 * @param {number | null} [threshold] binary models: overrides the metadata's threshold
 * @returns {Segmentation}
 */
export function segmentProbabilities(probabilities, metadata, size, threshold = null) {
  const [h, w] = metadata.input_size;
  const [height, width] = size;
  const channels = outputChannels(metadata);
  if (probabilities.length !== h * w * channels) {
    throw new Error(`model output has ${probabilities.length} values; the metadata describes ` +
      `${h}x${w}x${channels}`);
  }
  if (metadata.mode === 'instance') {
    const classMask = argmax(probabilities, channels);
    const instanceLabels = instancesFromProbabilities(probabilities, h, w, metadata.instance);
    const resizedLabels = resizeNearest(instanceLabels, h, w, height, width);
    return {classMask: resizeNearest(classMask, h, w, height, width), instanceLabels: resizedLabels,
      height, width, instanceCount: countIds(resizedLabels)};
  }
  const resized = height === h && width === w ? probabilities
    : resizeChannels(probabilities, h, w, channels, height, width);
  let classMask;
  if (channels === 1) {
    const cut = Math.fround(threshold ?? metadata.threshold);
    classMask = resized.map((value) => (value >= cut ? 1 : 0));
    classMask = Uint8Array.from(classMask);
  } else {
    classMask = argmax(resized, channels);
  }
  return {classMask, instanceLabels: null, height, width, instanceCount: null};
}

// One path for the browser backend, as segmenter.py: pixels -> preprocess -> LiteRT.js ->
// postprocess -> Segmentation, with the model call timed like the server's (one warm-up call,
// then `runs` timed calls on the same tensor).

import {LiteRtJsBackend} from './backend.js';
import {flipAveraged} from './flips.js';
import {segmentProbabilities} from './postprocess.js';
import {percentile, preprocess} from './preprocess.js';

/**
 * @typedef {import('./postprocess.js').ModelMetadata} ModelMetadata
 * @typedef {import('./postprocess.js').Segmentation} Segmentation
 * @typedef {import('./preprocess.js').Pixels} Pixels
 * @typedef {{segmentation: Segmentation, latenciesMs: number[], p50Ms: number, p95Ms: number,
 *            timingsMs: {preprocess: number, model: number, postprocess: number}}} SegmentResult
 */

/** numpy.percentile of latencies, as timing.percentiles_ms. */
export function percentileOf(/** @type {number[]} */ values, /** @type {number} */ percent) {
  return percentile(Float64Array.from(values).sort(), percent);
}

/**
 * `calls` timed calls of `run`, each awaited: milliseconds per call, as Segmenter.timed_run.
 * @param {() => Promise<unknown>} run
 * @param {number} calls
 * @returns {Promise<number[]>}
 */
export async function timedCalls(run, calls) {
  const latenciesMs = [];
  for (let i = 0; i < calls; i++) {
    const start = performance.now();
    await run();
    latenciesMs.push(performance.now() - start);
  }
  return latenciesMs;
}

export class Segmenter {
  /**
   * @param {LiteRtJsBackend} backend
   * @param {ModelMetadata} metadata
   */
  constructor(backend, metadata) {
    const [h, w] = metadata.input_size;
    const expected = [1, h, w, metadata.channels];
    if (backend.inputShape.join() !== expected.join()) {
      throw new Error(`the model takes input [${backend.inputShape}] but its metadata describes [${expected}]`);
    }
    this.backend = backend;
    this.metadata = metadata;
  }

  /**
   * Segment one image; `runs` timed model calls after a warm-up (0: the single call only).
   * flips: average the model's output over the image and its mirror images (flips.js), four
   * model calls each, as the Python runtime's `--flips`.
   * @param {Pixels} pixels
   * @param {{runs?: number, threshold?: number | null, flips?: boolean}} [options]
   * @returns {Promise<SegmentResult>}
   */
  async segment(pixels, {runs = 0, threshold = null, flips = false} = {}) {
    const [height, width] = this.metadata.input_size;
    const runModel = (/** @type {Float32Array} */ input) => this.backend.run(input);
    const run = flips ? (/** @type {Float32Array} */ input) => flipAveraged(runModel, input, height, width) : runModel;
    let start = performance.now();
    const {tensor, originalSize} = preprocess(pixels, this.metadata);
    const preprocessMs = performance.now() - start;
    start = performance.now();
    const probabilities = await run(tensor);
    const firstCallMs = performance.now() - start;
    const latenciesMs = await timedCalls(() => run(tensor), runs);
    start = performance.now();
    const segmentation = segmentProbabilities(probabilities, this.metadata, originalSize, threshold);
    const postprocessMs = performance.now() - start;
    const timed = latenciesMs.length ? latenciesMs : [firstCallMs];
    return {segmentation, latenciesMs: timed, p50Ms: percentileOf(timed, 50), p95Ms: percentileOf(timed, 95),
      timingsMs: {preprocess: preprocessMs, model: firstCallMs, postprocess: postprocessMs}};
  }
}

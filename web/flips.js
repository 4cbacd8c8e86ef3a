// Test-time flips, as unet/runtime/flips.py: a model's probabilities averaged over the image and
// its three mirror images, each output flipped back first. Four model calls where one would do.

/**
 * A (1, height, width, depth) tensor mirrored across its width and/or height.
 * @param {Float32Array} tensor
 * @param {number} height
 * @param {number} width
 * @param {{rows: boolean, columns: boolean}} flip  rows: mirror top to bottom; columns: left to right
 * @returns {Float32Array}
 */
export function mirrored(tensor, height, width, {rows, columns}) {
  const depth = tensor.length / (height * width);
  const out = new Float32Array(tensor.length);
  for (let y = 0; y < height; y++) {
    const fromY = rows ? height - 1 - y : y;
    for (let x = 0; x < width; x++) {
      const from = (fromY * width + (columns ? width - 1 - x : x)) * depth;
      out.set(tensor.subarray(from, from + depth), (y * width + x) * depth);
    }
  }
  return out;
}

/** The flips of unet.runtime.flips.FLIP_AXES, in its order: none, width, height, both. */
export const FLIPS = [{rows: false, columns: false}, {rows: false, columns: true},
  {rows: true, columns: false}, {rows: true, columns: true}];

/**
 * The mean of `run` over `tensor` and its mirror images, each output flipped back.
 * @param {(tensor: Float32Array) => Promise<Float32Array>} run  (1, h, w, C) -> (1, h, w, K)
 * @param {Float32Array} tensor
 * @param {number} height
 * @param {number} width
 * @returns {Promise<Float32Array>}
 */
export async function flipAveraged(run, tensor, height, width) {
  const outputs = [];
  for (const flip of FLIPS) outputs.push(mirrored(await run(mirrored(tensor, height, width, flip)), height, width, flip));
  const mean = new Float32Array(outputs[0].length);
  for (const output of outputs) {
    for (let i = 0; i < mean.length; i++) mean[i] += output[i];
  }
  for (let i = 0; i < mean.length; i++) mean[i] /= FLIPS.length;
  return mean;
}

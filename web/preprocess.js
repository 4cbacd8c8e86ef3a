// The browser's twin of unet/runtime/preprocess.py `preprocess`: image -> model tensor.
//
//   pixels (H, W, C) -> normalise intensities -> model channels -> bilinear resize to the
//   model input -> Float32Array (1, h, w, C) in [0, 1]
//
// Driven by the same metadata JSON as the Python runtime. Every step repeats the Python
// arithmetic (numpy's linear percentile, float32 scaling, Pillow's bilinear resampling of
// float images), so the browser feeds the model the tensor the server would.

/** Percentiles are estimated on at most this many samples, as in Python. */
export const PERCENTILE_SAMPLE_SIZE = 1_000_000;
/** ITU-R 601 luma, as float32. */
export const LUMA_WEIGHTS = [0.299, 0.587, 0.114].map(Math.fround);

/**
 * @typedef {{method: 'percentile' | 'unit', low: number, high: number}} Normalisation
 * @typedef {{data: Uint8Array | Uint16Array | Float32Array, height: number, width: number,
 *            channels: number}} Pixels  row-major (H, W, C)
 * @typedef {{input_size: [number, number], channels: number, normalisation: Normalisation}} Metadata
 */

/**
 * numpy.percentile's default ("linear") of an ascending Float64Array.
 * @param {Float64Array} sorted
 * @param {number} percent
 */
export function percentile(sorted, percent) {
  const n = sorted.length;
  const q = percent / 100;
  const index = n * q + (1 + q * -1) - 1; // numpy's virtual index for alpha = beta = 1
  const below = Math.min(Math.max(Math.floor(index), 0), n - 1);
  const above = Math.min(below + 1, n - 1);
  const t = index - Math.floor(index);
  const a = sorted[below];
  const b = sorted[above];
  const difference = b - a;
  return t >= 0.5 ? b - difference * (1 - t) : a + difference * t;
}

/**
 * Raw intensities -> float32 in [0, 1], jointly over channels.
 * @param {Pixels} pixels
 * @param {Normalisation} normalisation
 * @returns {Float32Array}
 */
export function normaliseIntensities(pixels, normalisation) {
  const values = pixels.data;
  const out = new Float32Array(values.length);
  if (normalisation.method === 'unit') {
    const scale = values instanceof Uint8Array ? 255 : values instanceof Uint16Array ? 65535 : 1;
    for (let i = 0; i < values.length; i++) {
      out[i] = Math.min(Math.max(Math.fround(values[i] / scale), 0), 1);
    }
    return out;
  }
  const step = Math.max(1, Math.floor(values.length / PERCENTILE_SAMPLE_SIZE));
  const sample = new Float64Array(Math.ceil(values.length / step));
  for (let i = 0, j = 0; i < values.length; i += step, j++) sample[j] = values[i];
  sample.sort();
  const low = percentile(sample, normalisation.low);
  const high = percentile(sample, normalisation.high);
  if (high - low <= 1e-12) return out;
  const low32 = Math.fround(low);
  const range32 = Math.fround(high - low);
  for (let i = 0; i < values.length; i++) {
    const scaled = Math.fround(Math.fround(Math.fround(values[i]) - low32) / range32);
    out[i] = Math.min(Math.max(scaled, 0), 1);
  }
  return out;
}

/**
 * (H, W, C) float32 -> (H, W, channels): colour to gray by luma, gray repeated to colour.
 * @param {Float32Array} values
 * @param {number} count pixels (H * W)
 * @param {number} from channels in
 * @param {number} to channels out
 */
export function toChannels(values, count, from, to) {
  if (from === to) return values;
  const out = new Float32Array(count * to);
  for (let p = 0; p < count; p++) {
    if (to === 1) {
      let sum = 0;
      for (let c = 0; c < 3; c++) sum += values[p * from + c] * LUMA_WEIGHTS[c];
      out[p] = Math.fround(sum);
    } else {
      for (let c = 0; c < to; c++) out[p * to + c] = values[p * from];
    }
  }
  return out;
}

/**
 * Pillow's resampling coefficients for the bilinear filter (Resample.c, precompute_coeffs).
 * @param {number} inSize
 * @param {number} outSize
 */
function bilinearCoefficients(inSize, outSize) {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filterScale; // the bilinear filter's support is 1
  const bounds = [];
  for (let xx = 0; xx < outSize; xx++) {
    const centre = (xx + 0.5) * scale;
    const xmin = Math.max(Math.trunc(centre - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(centre + support + 0.5), inSize);
    const weights = [];
    let total = 0;
    for (let x = 0; x < xmax - xmin; x++) {
      const w = Math.max(1 - Math.abs((x + xmin - centre + 0.5) / filterScale), 0);
      weights.push(w);
      total += w;
    }
    bounds.push({start: xmin, weights: weights.map((w) => (total !== 0 ? w / total : w))});
  }
  return bounds;
}

/**
 * One channel of a float image resized as Pillow resizes mode "F" with BILINEAR: a horizontal
 * pass, then a vertical one, each summed in float64 and stored as float32.
 * @param {Float32Array} plane (height, width)
 * @param {number} height
 * @param {number} width
 * @param {number} outHeight
 * @param {number} outWidth
 */
export function resizeBilinearPlane(plane, height, width, outHeight, outWidth) {
  let current = plane;
  let currentWidth = width;
  if (outWidth !== width) {
    const columns = bilinearCoefficients(width, outWidth);
    const next = new Float32Array(height * outWidth);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < outWidth; x++) {
        const {start, weights} = columns[x];
        let sum = 0;
        for (let k = 0; k < weights.length; k++) sum += current[y * width + start + k] * weights[k];
        next[y * outWidth + x] = sum;
      }
    }
    current = next;
    currentWidth = outWidth;
  }
  if (outHeight !== height) {
    const rows = bilinearCoefficients(height, outHeight);
    const next = new Float32Array(outHeight * currentWidth);
    for (let y = 0; y < outHeight; y++) {
      const {start, weights} = rows[y];
      for (let x = 0; x < currentWidth; x++) {
        let sum = 0;
        for (let k = 0; k < weights.length; k++) sum += current[(start + k) * currentWidth + x] * weights[k];
        next[y * currentWidth + x] = sum;
      }
    }
    current = next;
  }
  return current;
}

/**
 * Image -> model tensor (1, h, w, C) float32 in [0, 1], as Python's `preprocess`.
 * @param {Pixels} pixels
 * @param {Metadata} metadata
 * @returns {{tensor: Float32Array, shape: number[], originalSize: [number, number]}}
 */
export function preprocess(pixels, metadata) {
  const {height, width} = pixels;
  const channels = metadata.channels;
  const prepared = toChannels(normaliseIntensities(pixels, metadata.normalisation), height * width,
    pixels.channels, channels);
  const [outHeight, outWidth] = metadata.input_size;
  const tensor = resizeChannels(prepared, height, width, channels, outHeight, outWidth);
  return {tensor, shape: [1, outHeight, outWidth, channels], originalSize: [height, width]};
}

/**
 * Interleaved (H, W, C) values resized channel by channel, as Pillow's bilinear "F" mode
 * (resize_array): the tensor's resize here, the probabilities' in postprocess.js.
 * @param {Float32Array} values (H*W*C)
 * @param {number} height
 * @param {number} width
 * @param {number} channels
 * @param {number} outHeight
 * @param {number} outWidth
 * @returns {Float32Array} (outHeight*outWidth*C)
 */
export function resizeChannels(values, height, width, channels, outHeight, outWidth) {
  const resized = new Float32Array(outHeight * outWidth * channels);
  const plane = new Float32Array(height * width);
  for (let c = 0; c < channels; c++) {
    for (let p = 0; p < height * width; p++) plane[p] = values[p * channels + c];
    const big = resizeBilinearPlane(plane, height, width, outHeight, outWidth);
    for (let p = 0; p < outHeight * outWidth; p++) resized[p * channels + c] = big[p];
  }
  return resized;
}

// Image decoding in the browser and the nearest-neighbour resize, as unet/runtime/imageio.py.

/** @typedef {import('./preprocess.js').Pixels} Pixels */

/**
 * The source row (or column) of each target pixel in Pillow's nearest resize: the first centre
 * at scale / 2, then one float64 addition per pixel, truncated (imageio._nearest_sources).
 * @param {number} source
 * @param {number} target
 * @returns {Int32Array}
 */
export function nearestSources(source, target) {
  const scale = source / target;
  const sources = new Int32Array(target);
  let position = 0;
  for (let i = 0; i < target; i++) {
    position += i === 0 ? scale * 0.5 : scale;
    sources[i] = Math.min(Math.trunc(position), source - 1);
  }
  return sources;
}

/**
 * Nearest-neighbour resize of a (height, width) array of labels, keeping their values.
 * @template {Uint8Array | Int32Array} T
 * @param {T} values
 * @param {number} height
 * @param {number} width
 * @param {number} outHeight
 * @param {number} outWidth
 * @returns {T}
 */
export function resizeNearest(values, height, width, outHeight, outWidth) {
  if (height === outHeight && width === outWidth) return values;
  const rows = nearestSources(height, outHeight);
  const cols = nearestSources(width, outWidth);
  const out = /** @type {T} */ (new /** @type {any} */ (values.constructor)(outHeight * outWidth));
  for (let y = 0; y < outHeight; y++) {
    const from = rows[y] * width;
    for (let x = 0; x < outWidth; x++) out[y * outWidth + x] = values[from + cols[x]];
  }
  return out;
}

/**
 * RGBA pixels -> (H, W) when every pixel is gray (as a gray PNG reads in Python), else (H, W, 3).
 * Alpha is dropped, as Python's reader drops it.
 * @param {Uint8ClampedArray} rgba
 * @param {number} width
 * @param {number} height
 * @returns {Pixels}
 */
export function pixelsFromRgba(rgba, width, height) {
  const count = width * height;
  let gray = true;
  for (let p = 0; p < count && gray; p++) {
    gray = rgba[4 * p] === rgba[4 * p + 1] && rgba[4 * p] === rgba[4 * p + 2];
  }
  const channels = gray ? 1 : 3;
  const data = new Uint8Array(count * channels);
  for (let p = 0; p < count; p++) {
    for (let c = 0; c < channels; c++) data[p * channels + c] = rgba[4 * p + c];
  }
  return {data, height, width, channels};
}

/**
 * A PNG decoded by fast-png: every bit depth, gray or colour, without colour management, so
 * 16-bit microscopy and MRI reach the model with the values Python reads. Alpha is dropped.
 * @param {ArrayBuffer} bytes
 * @returns {Promise<Pixels>}
 */
async function decodePng(bytes) {
  const {decode} = await import('fast-png');
  const png = decode(new Uint8Array(bytes));
  if (png.palette) throw new Error('palette PNGs are decoded by the browser itself');
  const {width, height, channels} = png;
  const colour = channels >= 3 ? 3 : 1;
  const source = /** @type {Uint8Array | Uint16Array} */ (png.data);
  const data = new /** @type {any} */ (source.constructor)(width * height * colour);
  for (let p = 0; p < width * height; p++) {
    for (let c = 0; c < colour; c++) data[p * colour + c] = source[p * channels + c];
  }
  return {data, height, width, channels: colour};
}

/**
 * Decode an image file: PNG by fast-png (any bit depth), other formats by the browser's own
 * decoder without colour management. TIFF is refused with a message: no browser decodes it.
 * @param {Blob} blob
 * @returns {Promise<Pixels>}
 */
export async function decodeImage(blob) {
  const header = new Uint8Array(await blob.slice(0, 32).arrayBuffer());
  const isTiff = (header[0] === 0x49 && header[1] === 0x49) || (header[0] === 0x4d && header[1] === 0x4d);
  if (isTiff) throw new Error('TIFF cannot be decoded in the browser; use the server backends for it');
  const isPng = header[1] === 0x50 && header[2] === 0x4e && header[3] === 0x47;
  if (isPng) {
    try {
      return await decodePng(await blob.arrayBuffer());
    } catch (error) {
      if (!String(error).includes('palette')) throw new Error(`cannot decode this PNG: ${error}`);
    }
  }
  let bitmap;
  try {
    bitmap = await createImageBitmap(blob, {colorSpaceConversion: 'none', premultiplyAlpha: 'none'});
  } catch (error) {
    throw new Error(`the browser cannot decode this file as an image (${error})`);
  }
  return pixelsFromBitmap(bitmap);
}

/**
 * Pixels of anything a canvas can draw: an ImageBitmap, a video frame, an image element.
 * @param {CanvasImageSource & {width?: number, height?: number, videoWidth?: number, videoHeight?: number}} source
 * @returns {Pixels}
 */
export function pixelsFromBitmap(source) {
  const width = source.videoWidth || /** @type {number} */ (source.width);
  const height = source.videoHeight || /** @type {number} */ (source.height);
  const canvas = new OffscreenCanvas(width, height);
  const context = /** @type {OffscreenCanvasRenderingContext2D} */ (
    canvas.getContext('2d', {willReadFrequently: true, colorSpace: 'srgb'}));
  context.drawImage(source, 0, 0);
  return pixelsFromRgba(context.getImageData(0, 0, width, height).data, width, height);
}

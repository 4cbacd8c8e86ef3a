// Masks blended over the image on a canvas, as unet/runtime/overlay.py draws them for the
// server's backends, pixel for pixel (tests/test_web_parity.py): class colours at `opacity`,
// background untouched; instances each in a colour, outlined in white. The blend is numpy's:
// float32 products and sum, rounded half to even.

import {normaliseIntensities} from './preprocess.js';

/** @typedef {import('./preprocess.js').Pixels} Pixels */

/**
 * 8-bit values for display; 16-bit and float images stretched, as overlay.display_image does.
 * @param {Pixels} pixels
 */
function displayValues(pixels) {
  if (pixels.data instanceof Uint8Array) return pixels.data;
  const stretched = normaliseIntensities(pixels, {method: 'percentile', low: 0.5, high: 99.5});
  return Uint8Array.from(stretched, (value) => roundHalfEven(Math.fround(value * 255)));
}

/** numpy's np.round: halves go to the even neighbour. */
function roundHalfEven(/** @type {number} */ value) {
  const floor = Math.floor(value);
  const fraction = value - floor;
  if (fraction !== 0.5) return Math.round(value);
  return floor % 2 === 0 ? floor : floor + 1;
}
/** @typedef {import('./postprocess.js').Segmentation} Segmentation */

/** A stable colour per instance id: 60-255 per channel from the hash overlay.instance_colours uses. */
export function instanceColour(/** @type {number} */ id) {
  let hash = Math.imul(id, 2654435761) >>> 0;
  const channel = () => { hash = Math.imul(hash ^ (hash >>> 15), 2246822519) >>> 0; return 60 + (hash % 196); };
  return [channel(), channel(), channel()];
}

/**
 * RGBA overlay of a segmentation on its image, as an ImageData for a canvas.
 * @param {Pixels} pixels
 * @param {Segmentation} segmentation
 * @param {number[][]} classColours
 * @param {number} [opacity] default: 0.45 for instances, 0.5 for classes, as overlay.py
 * @returns {ImageData}
 */
export function segmentationOverlay(pixels, segmentation, classColours, opacity) {
  const rgba = overlayPixels(pixels, segmentation, classColours, opacity);
  return new ImageData(rgba, segmentation.width, segmentation.height);
}

/**
 * The overlay's RGBA bytes (H*W*4): segmentation_overlay of unet/runtime/overlay.py, with alpha 255.
 * @param {Pixels} pixels (H, W, C): C 1 or 3, or 4 for RGBA whose alpha is ignored
 * @param {Segmentation} segmentation
 * @param {number[][]} classColours
 * @param {number} [opacity]
 * @param {Uint8ClampedArray} [out] (H*W*4) to draw into instead of a new array
 * @returns {Uint8ClampedArray}
 */
export function overlayPixels(pixels, segmentation, classColours, opacity, out) {
  const {width, height} = segmentation;
  const labels = segmentation.instanceLabels;
  const alpha = opacity ?? (labels ? 0.45 : 0.5);
  const keep = Math.fround(1 - alpha);
  const add = Math.fround(alpha);
  const rgba = out ?? new Uint8ClampedArray(width * height * 4);
  const data = displayValues(pixels);
  const {channels} = pixels;
  /** @type {Map<number, number[]>} */
  const colours = new Map();
  for (let p = 0; p < width * height; p++) {
    for (let c = 0; c < 3; c++) rgba[4 * p + c] = data[p * channels + (channels >= 3 ? c : 0)];
    rgba[4 * p + 3] = 255;
    let colour = null;
    if (labels) {
      const id = labels[p];
      if (id > 0) {
        if (!colours.has(id)) colours.set(id, instanceColour(id));
        colour = colours.get(id);
      }
    } else if (segmentation.classMask[p] > 0) {
      colour = classColours[Math.min(segmentation.classMask[p], classColours.length - 1)];
    }
    if (colour) {
      for (let c = 0; c < 3; c++) {
        rgba[4 * p + c] = roundHalfEven(Math.fround(Math.fround(rgba[4 * p + c] * keep) + Math.fround(colour[c] * add)));
      }
    }
  }
  if (labels) {
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const p = y * width + x;
        const id = labels[p];
        const edge = id > 0 && ((y > 0 && labels[p - width] !== id) || (x > 0 && labels[p - 1] !== id) ||
          (x < width - 1 && labels[p + 1] !== id) || (y < height - 1 && labels[p + width] !== id));
        if (edge) rgba.fill(255, 4 * p, 4 * p + 3);
      }
    }
  }
  return rgba;
}

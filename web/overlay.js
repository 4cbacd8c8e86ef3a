// Masks blended over the image on a canvas, as overlay.py draws them for the server's backends:
// class colours at `opacity`, background untouched; instances each in a colour, outlined in white.

import {normaliseIntensities} from './preprocess.js';

/** @typedef {import('./preprocess.js').Pixels} Pixels */

/**
 * 8-bit values for display; 16-bit and float images stretched, as overlay.display_image does.
 * @param {Pixels} pixels
 */
function displayValues(pixels) {
  if (pixels.data instanceof Uint8Array) return pixels.data;
  const stretched = normaliseIntensities(pixels, {method: 'percentile', low: 0.5, high: 99.5});
  return Uint8Array.from(stretched, (value) => Math.round(value * 255));
}
/** @typedef {import('./postprocess.js').Segmentation} Segmentation */

/** A stable colour per instance id (60-255 per channel, as overlay.instance_colours ranges). */
function instanceColour(/** @type {number} */ id) {
  let hash = Math.imul(id, 2654435761) >>> 0;
  const channel = () => { hash = Math.imul(hash ^ (hash >>> 15), 2246822519) >>> 0; return 60 + (hash % 196); };
  return [channel(), channel(), channel()];
}

/**
 * RGBA overlay of a segmentation on its image.
 * @param {Pixels} pixels 8-bit (H, W) or (H, W, 3)
 * @param {Segmentation} segmentation
 * @param {number[][]} classColours
 * @param {number} opacity
 * @returns {ImageData}
 */
export function segmentationOverlay(pixels, segmentation, classColours, opacity = 0.5) {
  const {width, height} = segmentation;
  const rgba = new Uint8ClampedArray(width * height * 4);
  const data = displayValues(pixels);
  const {channels} = pixels;
  const labels = segmentation.instanceLabels;
  /** @type {Map<number, number[]>} */
  const colours = new Map();
  for (let p = 0; p < width * height; p++) {
    for (let c = 0; c < 3; c++) rgba[4 * p + c] = data[p * channels + (channels === 3 ? c : 0)];
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
      for (let c = 0; c < 3; c++) rgba[4 * p + c] = Math.round(rgba[4 * p + c] * (1 - opacity) + colour[c] * opacity);
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
  return new ImageData(rgba, width, height);
}

// The page's on-device backend: `window.unetEdge` for scripts and tests, and the app's panel
// (run on this device, live camera). Nothing here sends an image anywhere: the panel reports
// its masks and timings to the server, never the pixels it segmented.

import {LiteRtJsBackend, addImportMap, singleThreadReason} from './backend.js';
import {decodeImage, resizeNearest} from './imageio.js';
import {LiveSegmenter} from './live.js';
import {segmentationOverlay} from './overlay.js';
import {Segmenter, timedCalls} from './segmenter.js';

/**
 * What the server tells the page (GET /unet-edge/config.json).
 * @typedef {{litert: import('./backend.js').LiteRtSource, models: Object<string, {metadata: string,
 *            variants: Object<string, string>}>, variant: string}} Config
 * @typedef {{mask: Uint8Array, instanceLabels: Int32Array | null, width: number, height: number,
 *            instances: number | null, p50_ms: number, p95_ms: number, backend: string,
 *            accelerator: string, threads: number, cores: number, litert: string}} DeviceResult
 */

const BASE = '/unet-edge';
/** @type {Promise<Config> | null} */
let configPromise = null;
/** @type {Map<string, Promise<Segmenter>>} */
const segmenters = new Map();

export function config() {
  configPromise ??= fetch(`${BASE}/config.json`).then((response) => {
    if (!response.ok) throw new Error(`cannot read ${BASE}/config.json: HTTP ${response.status}`);
    return response.json();
  });
  return configPromise;
}

/**
 * The segmenter of one model on this device, compiled once per (model, variant, accelerator, threads).
 * @param {string} name
 * @param {{accelerator?: 'wasm' | 'webgpu', threads?: number, variant?: string}} [options]
 *   variant: the browser's int8 variant unless given ("float32" is served too)
 */
export function segmenterFor(name, options = {}) {
  const key = `${name}|${options.variant ?? ''}|${options.accelerator ?? 'wasm'}|${options.threads ?? 'all'}`;
  if (!segmenters.has(key)) {
    segmenters.set(key, (async () => {
      const {litert, models, variant} = await config();
      const files = models[name];
      if (!files) throw new Error(`unknown model ${JSON.stringify(name)}; choose one of ${Object.keys(models).join(', ')}`);
      const url = files.variants[options.variant ?? variant];
      if (!url) throw new Error(`${name} has no ${options.variant} file for the browser; it has ${Object.keys(files.variants)}`);
      const metadata = await (await fetch(files.metadata)).json();
      return new Segmenter(await LiteRtJsBackend.open(litert, url, options), metadata);
    })().catch((error) => { segmenters.delete(key); throw error; }));
  }
  return /** @type {Promise<Segmenter>} */ (segmenters.get(key));
}

/**
 * Segment an image file on this device.
 * @param {Blob} blob an image file (PNG, JPEG, WebP, ...)
 * @param {{model: string, runs?: number, threads?: number, accelerator?: 'wasm' | 'webgpu',
 *          threshold?: number | null, flips?: boolean}} options  flips: Segmenter.segment's
 * @returns {Promise<DeviceResult>}
 */
export async function segment(blob, options) {
  if (!options?.model) throw new Error('segment(blob, {model}) needs a model name');
  addImportMap((await config()).litert.imports);
  const pixels = await decodeImage(blob);
  return segmentPixels(pixels, options);
}

/**
 * @param {import('./preprocess.js').Pixels} pixels
 * @param {{model: string, runs?: number, threads?: number, accelerator?: 'wasm' | 'webgpu',
 *          threshold?: number | null, flips?: boolean}} options
 * @returns {Promise<DeviceResult>}
 */
async function segmentPixels(pixels, options) {
  const segmenter = await segmenterFor(options.model, options);
  const result = await segmenter.segment(pixels, {runs: options.runs ?? 10, threshold: options.threshold ?? null,
    flips: options.flips ?? false});
  const {litert} = await config();
  const {segmentation} = result;
  return {mask: segmentation.classMask, instanceLabels: segmentation.instanceLabels,
    width: segmentation.width, height: segmentation.height, instances: segmentation.instanceCount,
    p50_ms: result.p50Ms, p95_ms: result.p95Ms, backend: segmenter.backend.label,
    accelerator: segmenter.backend.accelerator, threads: segmenter.backend.threads,
    cores: navigator.hardwareConcurrency ?? 1, litert: `${litert.version} (${litert.source})`,
    pixels, segmentation, metadata: segmenter.metadata};
}

/**
 * A PNG data URL whose red and green bytes hold `values` (low, high byte): how masks and
 * instance ids travel to the server without the image itself.
 * @param {ArrayLike<number>} values
 * @param {number} width
 * @param {number} height
 */
async function valuesPng(values, width, height) {
  const rgba = new Uint8ClampedArray(width * height * 4);
  for (let p = 0; p < width * height; p++) {
    rgba[4 * p] = values[p] & 255;
    rgba[4 * p + 1] = (values[p] >> 8) & 255;
    rgba[4 * p + 3] = 255;
  }
  const canvas = new OffscreenCanvas(width, height);
  /** @type {OffscreenCanvasRenderingContext2D} */ (canvas.getContext('2d')).putImageData(new ImageData(rgba, width, height), 0, 0);
  const blob = await canvas.convertToBlob({type: 'image/png'});
  return new Promise((resolve) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.readAsDataURL(blob);
  });
}

/** @param {HTMLCanvasElement} canvas @param {ImageData} image */
function draw(canvas, image) {
  canvas.width = image.width;
  canvas.height = image.height;
  /** @type {CanvasRenderingContext2D} */ (canvas.getContext('2d')).putImageData(image, 0, 0);
}

/** The value of the app's control `#id` (a dropdown or a number input). */
function control(/** @type {string} */ id) {
  const input = /** @type {HTMLInputElement | null} */ (document.querySelector(`#${id} input`));
  return input ? input.value : null;
}

/**
 * Wire the app's "On this device" panel (a gr.HTML) to this module.
 * @param {HTMLElement} element the panel
 * @param {(event: string, data?: object) => void} trigger sends an event to the server
 */
export async function mountPanel(element, trigger) {
  const status = /** @type {HTMLElement} */ (element.querySelector('.device-status'));
  const canvas = /** @type {HTMLCanvasElement} */ (element.querySelector('canvas.device-overlay'));
  const rate = /** @type {HTMLElement} */ (element.querySelector('.device-rate'));
  const say = (/** @type {string} */ text) => { status.textContent = text; };
  let cfg;
  try {
    cfg = await config();
  } catch (error) {
    say(`On-device backend unavailable: ${error}`);
    return;
  }
  const reason = singleThreadReason(cfg.litert);
  const where = cfg.litert.source === 'local' ? 'served by this app'
    : `from a public CDN (${cfg.litert.imports['@litertjs/core']}): web/node_modules is not installed on the server`;
  say(`LiteRT.js ${cfg.litert.version} ${where}; this browser reports ${navigator.hardwareConcurrency ?? '?'} cores. ` +
    (reason ? `One thread: ${reason}.` : 'WebAssembly threads are available.'));

  const opacity = 0.5;
  const show = (/** @type {any} */ result) =>
    draw(canvas, segmentationOverlay(result.pixels, result.segmentation, result.metadata.class_colours, opacity));

  /** @param {Promise<Blob>} source */
  const runOn = async (source, report) => {
    const model = control('model');
    if (!model) throw new Error('choose a model first');
    say(`Segmenting on this device with ${model}...`);
    addImportMap(cfg.litert.imports);
    const result = await segmentPixels(await decodeImage(await source), {model, runs: Number(control('timed-runs') ?? 10)});
    show(result);
    say(`${result.backend} on this device: p50 ${result.p50_ms.toFixed(2)} ms, p95 ${result.p95_ms.toFixed(2)} ms` +
      (result.instances !== null ? `, ${result.instances} instances` : '') + (reason ? ` (one thread: ${reason})` : ''));
    if (report) {
      trigger('device_result', {
        model, backend: result.backend, accelerator: result.accelerator, threads: result.threads,
        cores: result.cores, litert: result.litert, p50_ms: result.p50_ms, p95_ms: result.p95_ms,
        instances: result.instances, width: result.width, height: result.height,
        mask_png: await valuesPng(result.mask, result.width, result.height),
        instances_png: result.instanceLabels ? await valuesPng(result.instanceLabels, result.width, result.height) : null,
      });
    }
  };
  const guarded = (/** @type {() => Promise<void>} */ work) => () => work().catch((error) => say(`On-device run failed: ${error.message ?? error}`));

  element.querySelector('.device-run')?.addEventListener('click', guarded(async () => {
    const shown = /** @type {HTMLImageElement | null} */ (document.querySelector('#image img'));
    if (!shown?.src) throw new Error('no image: upload one or pick an example first');
    // The image the server already has, read back from it; the run itself sends no pixels.
    await runOn(fetch(shown.src).then((response) => response.blob()), true);
  }));
  element.querySelector('.device-file')?.addEventListener('change', guarded(async () => {
    const input = /** @type {HTMLInputElement} */ (element.querySelector('.device-file'));
    if (input.files?.[0]) await runOn(Promise.resolve(input.files[0]), false);
  }));
  const camera = /** @type {HTMLInputElement} */ (element.querySelector('.device-camera'));
  camera?.addEventListener('change', guarded(async () => {
    if (camera.checked) await startCamera(element, canvas, rate, say, opacity);
  }));
}

/**
 * Stream camera frames through the on-device model (the live preview, web/live.js) until the
 * toggle is cleared. Frames never leave the page. Shows frames per second and where a frame's
 * time goes; the rate element's data attributes hold the same for tests and benchmarks.
 */
async function startCamera(element, canvas, rate, say, opacity) {
  const camera = /** @type {HTMLInputElement} */ (element.querySelector('.device-camera'));
  const model = control('model');
  if (!model) throw new Error('choose a model first');
  const stream = await navigator.mediaDevices.getUserMedia({video: {width: 640, height: 480}, audio: false});
  const video = document.createElement('video');
  video.muted = true;
  video.playsInline = true;
  video.srcObject = stream;
  await video.play();
  const segmenter = await segmenterFor(model);
  const live = new LiveSegmenter(segmenter.backend, segmenter.metadata);
  canvas.style.width = `${video.videoWidth || 640}px`;
  say(`Live camera on this device: ${segmenter.backend.label}, ${model}, a preview at the model's ` +
    `${live.width}x${live.height}. No frame leaves this page.`);
  for (const key of ['frames', 'fps', 'phases']) delete rate.dataset[key];
  /** @type {Record<string, number>} */
  const totals = {};
  let frames = 0;
  let started = 0;
  try {
    while (camera.checked) {
      const {phases, segmentation: {instanceCount}} = await live.segmentFrame(video, canvas, opacity);
      // The first frame compiles and warms up; the rate counts from the second.
      if (frames === 0) started = performance.now();
      else for (const [phase, ms] of Object.entries(phases)) totals[phase] = (totals[phase] ?? 0) + ms;
      frames += 1;
      const counted = Math.max(frames - 1, 1);
      const fps = frames > 1 ? (frames - 1) / ((performance.now() - started) / 1000) : 0;
      const means = Object.fromEntries(Object.entries(totals).map(([phase, ms]) => [phase, ms / counted]));
      Object.assign(rate.dataset, {frames: String(frames), fps: fps.toFixed(2), phases: JSON.stringify(means)});
      rate.textContent = `${fps.toFixed(1)} FPS; last frame ${phases.frame.toFixed(1)} ms ` +
        `(grab ${phases.grab.toFixed(1)}, normalise ${phases.normalise.toFixed(1)}, model ${phases.model.toFixed(1)}, ` +
        `postprocess ${phases.postprocess.toFixed(1)}, instances ${phases.instances.toFixed(1)}, ` +
        `draw ${phases.draw.toFixed(1)} ms)` + (instanceCount !== null ? `, ${instanceCount} instances` : '');
      // Let the page handle events (the toggle) between frames without waiting for a repaint.
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
  } finally {
    for (const track of stream.getTracks()) track.stop();
  }
}

/**
 * The live preview of one image file beside the exact path: the share of the exact class mask's
 * pixels the preview's (model-sized, brought to the image by nearest neighbour) agrees with, and
 * the preview's per-phase milliseconds.
 * @param {Blob} blob
 * @param {{model: string}} options
 */
async function livePreview(blob, {model}) {
  addImportMap((await config()).litert.imports);
  const segmenter = await segmenterFor(model);
  const live = new LiveSegmenter(segmenter.backend, segmenter.metadata);
  const {phases, segmentation: preview} = await live.segmentFrame(await createImageBitmap(blob),
    document.createElement('canvas'));
  const exact = (await segmenter.segment(await decodeImage(blob), {runs: 0})).segmentation;
  const upscaled = resizeNearest(preview.classMask, live.height, live.width, exact.height, exact.width);
  let agreed = 0;
  for (let p = 0; p < upscaled.length; p++) if (upscaled[p] === exact.classMask[p]) agreed += 1;
  return {agreement: agreed / upscaled.length, phases};
}

globalThis.unetEdge = {
  livePreview,
  /** @type {typeof segment} */
  segment: async (blob, options) => {
    const {pixels, segmentation, metadata, ...result} = /** @type {any} */ (await segment(blob, options));
    return result;
  },
  config,
  /**
   * One model call on a tensor made elsewhere (the parity tests feed Python's): (1, h, w, C)
   * float32 -> (1, h, w, K) float32, and its latency over `runs` calls after a warm-up.
   * @param {Float32Array} tensor
   * @param {{model: string, variant?: string, threads?: number, runs?: number}} options
   */
  runTensor: async (tensor, options) => {
    const {backend} = await segmenterFor(options.model, options);
    const output = await backend.run(tensor);
    const latenciesMs = await timedCalls(() => backend.run(tensor), options.runs ?? 0);
    return {output, latenciesMs, backend: backend.label, threads: backend.threads};
  },
};

// LiteRT.js: load the runtime once, compile a model, run one float32 tensor. As backends.py,
// a backend only runs a tensor; preprocess and postprocess are shared with every other backend.

/**
 * Where LiteRT.js (and the other npm modules) come from: the npm folder the server serves, or
 * the same pinned versions on a public CDN when that folder is absent (unet/runtime/browser.py).
 * @typedef {{imports: Object<string, string>, wasm: string, source: 'local' | 'cdn', version: string}} LiteRtSource
 */

/** @type {Promise<{litert: any, threads: boolean, source: LiteRtSource}> | null} */
let loading = null;

/**
 * An import map for the npm modules, so they import each other by name without a bundler.
 * LiteRT.js imports `@litertjs/wasm-utils`, whose package.json names a `main` it does not ship.
 * @param {Object<string, string>} imports
 */
export function addImportMap(imports) {
  if (document.querySelector('script[data-unet-edge-importmap]')) return;
  const script = document.createElement('script');
  script.type = 'importmap';
  script.dataset.unetEdgeImportmap = '';
  script.textContent = JSON.stringify({imports});
  document.head.append(script);
}

/**
 * Load LiteRT.js once per page. Threads need cross-origin isolation (COOP/COEP headers) and the
 * runtime served from this origin (a worker cannot start from a CDN's script).
 * @param {LiteRtSource} source
 */
export function loadRuntime(source) {
  loading ??= (async () => {
    addImportMap(source.imports);
    const litert = await import('@litertjs/core');
    const threads = Boolean(globalThis.crossOriginIsolated) && source.source === 'local';
    await litert.loadLiteRt(source.wasm, {threads});
    return {litert, threads, source};
  })();
  return loading;
}

/** Why the page runs on one thread, or null when it can use more. */
export function singleThreadReason(/** @type {LiteRtSource} */ source) {
  if (!globalThis.crossOriginIsolated) {
    return 'this page is not cross-origin isolated (no COOP/COEP headers), so WebAssembly runs on one thread';
  }
  if (source.source !== 'local') return 'LiteRT.js comes from a CDN, whose script cannot start worker threads here';
  return null;
}

export class LiteRtJsBackend {
  /**
   * @param {any} litert the LiteRT.js module
   * @param {any} model a compiled model
   * @param {{accelerator: 'wasm' | 'webgpu', threads: number, inputShape: number[], variant: string}} info
   */
  constructor(litert, model, info) {
    this.variant = info.variant;
    this.litert = litert;
    this.model = model;
    this.accelerator = info.accelerator;
    this.threads = info.threads;
    this.inputShape = info.inputShape;
  }

  /**
   * Compile a `.tflite` for this device: WASM (XNNPACK) on `threads` threads, or WebGPU.
   * @param {LiteRtSource} source
   * @param {string} url
   * @param {{accelerator?: 'wasm' | 'webgpu', threads?: number, variant?: string}} [options]
   *   variant: only names the file in the label (default int8, the browser's variant)
   */
  static async open(source, url, options = {}) {
    const {litert, threads: threaded} = await loadRuntime(source);
    const accelerator = options.accelerator ?? 'wasm';
    if (accelerator === 'webgpu' && !litert.isWebGPUSupported()) {
      throw new Error('WebGPU is not available in this browser; use the WASM backend');
    }
    const wanted = options.threads ?? navigator.hardwareConcurrency ?? 1;
    const threads = threaded ? Math.max(1, wanted) : 1;
    const response = await fetch(url);
    if (!response.ok) throw new Error(`cannot fetch the model ${url}: HTTP ${response.status}`);
    const bytes = new Uint8Array(await response.arrayBuffer());
    const model = await litert.loadAndCompile(bytes, {accelerator, cpuOptions: {numThreads: threads}});
    const input = model.getInputDetails()[0];
    return new LiteRtJsBackend(litert, model, {accelerator, threads, inputShape: Array.from(input.shape),
      variant: options.variant ?? 'int8'});
  }

  /** What ran it, as the latency table shows it. */
  get label() {
    const threads = this.accelerator === 'wasm' ? `, ${this.threads} thread${this.threads > 1 ? 's' : ''}` : '';
    return `LiteRT.js ${this.variant} (${this.accelerator === 'wasm' ? 'WASM' : 'WebGPU'}${threads})`;
  }

  /**
   * (1, h, w, C) float32 in [0, 1] -> (1, h, w, K) float32 probabilities.
   * @param {Float32Array} tensor
   * @returns {Promise<Float32Array>}
   */
  async run(tensor) {
    const input = new this.litert.Tensor(tensor, this.inputShape);
    try {
      const outputs = await this.model.run(input);
      // moveTo hands back the tensor on the CPU side and frees the one it moved.
      const onCpu = await outputs[0].moveTo('wasm');
      try {
        return new Float32Array(onCpu.toTypedArray());
      } finally {
        onCpu.delete();
      }
    } finally {
      input.delete();
    }
  }
}

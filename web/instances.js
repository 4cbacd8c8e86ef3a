// Instances from a 3-class (background, interior, boundary) or 4-class (+ core) U-Net, as
// unet/runtime/instances.py: components of the seed class, the core if the model has one, else the
// interior (marker_min_distance 0), seed a watershed on its probability, or the peaks of their
// Euclidean distance transform (marker_min_distance > 0) seed one on the negated distance. Each
// step repeats what Python's libraries do, down to the order in which ties are settled, so the
// labels are the same ids at the same pixels (tests/test_web_parity.py).

export const BACKGROUND = 0;
export const INTERIOR = 1;
export const CORE = 3;

/**
 * The class whose regions seed the watershed: the core in a 4-class model, else the interior.
 * @param {number} numClasses
 */
export function seedClass(numClasses) {
  return numClasses === 4 ? CORE : INTERIOR;
}

/**
 * @typedef {{foreground_threshold: number, interior_threshold: number, marker_min_distance: number,
 *            min_size: number, keep_unseeded?: boolean}} InstanceParams
 */

/**
 * Connected components of a mask, numbered 1..N in the raster order of their first pixel, as
 * skimage.measure.label(mask, connectivity) numbers them: 1 is 4-connected, 2 is 8-connected.
 * @param {Uint8Array} mask (H*W) 0/1
 * @param {number} height
 * @param {number} width
 * @param {1 | 2} [connectivity]
 * @returns {Int32Array}
 */
export function labelComponents(mask, height, width, connectivity = 1) {
  const labels = new Int32Array(height * width);
  const queue = new Int32Array(height * width);
  let next = 0;
  for (let start = 0; start < mask.length; start++) {
    if (!mask[start] || labels[start]) continue;
    next += 1;
    labels[start] = next;
    let head = 0;
    let tail = 0;
    queue[tail++] = start;
    while (head < tail) {
      const p = queue[head++];
      const y = Math.floor(p / width);
      const x = p - y * width;
      if (y > 0 && mask[p - width] && !labels[p - width]) { labels[p - width] = next; queue[tail++] = p - width; }
      if (x > 0 && mask[p - 1] && !labels[p - 1]) { labels[p - 1] = next; queue[tail++] = p - 1; }
      if (x < width - 1 && mask[p + 1] && !labels[p + 1]) { labels[p + 1] = next; queue[tail++] = p + 1; }
      if (y < height - 1 && mask[p + width] && !labels[p + width]) { labels[p + width] = next; queue[tail++] = p + width; }
      if (connectivity === 2) {
        for (const [dy, dx] of DIAGONALS) {
          if (y + dy < 0 || y + dy >= height || x + dx < 0 || x + dx >= width) continue;
          const q = p + dy * width + dx;
          if (mask[q] && !labels[q]) { labels[q] = next; queue[tail++] = q; }
        }
      }
    }
  }
  return labels;
}

const DIAGONALS = [[-1, -1], [-1, 1], [1, -1], [1, 1]];

/**
 * A mask without its 4-connected regions of fewer than `minSize` pixels.
 * @param {Uint8Array} mask
 * @param {number} height
 * @param {number} width
 * @param {number} minSize
 * @returns {Uint8Array}
 */
export function withoutSmallRegions(mask, height, width, minSize) {
  const kept = sequentialWithoutSmall(labelComponents(mask, height, width), minSize);
  const result = new Uint8Array(kept.length);
  for (let p = 0; p < kept.length; p++) result[p] = kept[p] > 0 ? 1 : 0;
  return result;
}

/**
 * scipy.ndimage.distance_transform_edt of a mask: each set pixel's Euclidean distance to the
 * nearest unset one, exactly (Felzenszwalb and Huttenlocher's squared distance transform,
 * columns then rows, on integers; then one square root, as scipy takes it).
 * @param {Uint8Array} mask
 * @param {number} height
 * @param {number} width
 * @returns {Float64Array}
 */
export function distanceTransform(mask, height, width) {
  const far = 1e20;
  const squared = new Float64Array(height * width);
  for (let p = 0; p < squared.length; p++) squared[p] = mask[p] ? far : 0;
  const line = new Float64Array(Math.max(height, width));
  const result = new Float64Array(Math.max(height, width));
  const vertices = new Int32Array(Math.max(height, width));
  const bounds = new Float64Array(Math.max(height, width) + 1);
  /** @param {number} start @param {number} stride @param {number} length */
  const transformLine = (start, stride, length) => {
    for (let i = 0; i < length; i++) line[i] = squared[start + i * stride];
    let k = 0;
    vertices[0] = 0;
    bounds[0] = -Infinity;
    bounds[1] = Infinity;
    for (let q = 1; q < length; q++) {
      let crossing = ((line[q] + q * q) - (line[vertices[k]] + vertices[k] * vertices[k])) / (2 * q - 2 * vertices[k]);
      while (crossing <= bounds[k]) {
        k -= 1;
        crossing = ((line[q] + q * q) - (line[vertices[k]] + vertices[k] * vertices[k])) / (2 * q - 2 * vertices[k]);
      }
      k += 1;
      vertices[k] = q;
      bounds[k] = crossing;
      bounds[k + 1] = Infinity;
    }
    k = 0;
    for (let q = 0; q < length; q++) {
      while (bounds[k + 1] < q) k += 1;
      const offset = q - vertices[k];
      result[q] = offset * offset + line[vertices[k]];
    }
    for (let i = 0; i < length; i++) squared[start + i * stride] = result[i];
  };
  for (let x = 0; x < width; x++) transformLine(x, width, height);
  for (let y = 0; y < height; y++) transformLine(y * width, 1, width);
  return squared.map(Math.sqrt);
}

/**
 * scipy.ndimage.maximum_filter(values, size) on a square window: its 'reflect' border mode
 * repeats values already inside the window, so the window is simply clipped to the image.
 * @param {Float64Array} values
 * @param {number} height
 * @param {number} width
 * @param {number} radius half the window, size = 2 * radius + 1
 * @returns {Float64Array}
 */
export function maximumFilter(values, height, width, radius) {
  const rows = new Float64Array(values.length);
  for (let y = 0; y < height; y++) {
    const row = y * width;
    for (let x = 0; x < width; x++) {
      const last = x + radius < width ? x + radius : width - 1;
      let top = -Infinity;
      for (let i = x > radius ? x - radius : 0; i <= last; i++) if (values[row + i] > top) top = values[row + i];
      rows[row + x] = top;
    }
  }
  const result = new Float64Array(values.length);
  for (let y = 0; y < height; y++) {
    const first = y > radius ? y - radius : 0;
    const last = y + radius < height ? y + radius : height - 1;
    for (let x = 0; x < width; x++) {
      let top = -Infinity;
      for (let j = first; j <= last; j++) if (rows[j * width + x] > top) top = rows[j * width + x];
      result[y * width + x] = top;
    }
  }
  return result;
}

/**
 * Markers at the local maxima of a distance map, at least `minDistance` apart, as
 * unet.runtime.instances.distance_peaks: 8-connected plateaus of maxima are one marker.
 * @param {Float64Array} distance
 * @param {number} height
 * @param {number} width
 * @param {number} minDistance
 * @returns {Int32Array}
 */
export function distancePeaks(distance, height, width, minDistance) {
  const highest = maximumFilter(distance, height, width, minDistance);
  const peaks = new Uint8Array(distance.length);
  for (let p = 0; p < distance.length; p++) peaks[p] = distance[p] === highest[p] && distance[p] > 0 ? 1 : 0;
  return labelComponents(peaks, height, width, 2);
}

/**
 * Ids renumbered 1..N in order, those covering fewer than `minSize` pixels dropped.
 * @param {Int32Array} labels
 * @param {number} minSize
 * @returns {Int32Array}
 */
export function sequentialWithoutSmall(labels, minSize) {
  let top = 0;
  for (const id of labels) if (id > top) top = id;
  const counts = new Int32Array(top + 1);
  for (const id of labels) counts[id] += 1;
  const newIds = new Int32Array(top + 1);
  let kept = 0;
  for (let id = 1; id <= top; id++) if (counts[id] >= minSize) newIds[id] = ++kept;
  const result = new Int32Array(labels.length);
  for (let p = 0; p < labels.length; p++) result[p] = newIds[labels[p]];
  return result;
}

/**
 * `mask` with every background region that does not touch the border filled (4-connected).
 * @param {Uint8Array} mask
 * @param {number} height
 * @param {number} width
 * @returns {Uint8Array}
 */
export function fillHoles(mask, height, width) {
  const outside = new Uint8Array(mask.length);
  const queue = new Int32Array(mask.length);
  let tail = 0;
  const seed = (/** @type {number} */ p) => {
    if (!mask[p] && !outside[p]) { outside[p] = 1; queue[tail++] = p; }
  };
  for (let x = 0; x < width; x++) { seed(x); seed((height - 1) * width + x); }
  for (let y = 0; y < height; y++) { seed(y * width); seed(y * width + width - 1); }
  for (let head = 0; head < tail; head++) {
    const p = queue[head];
    const y = Math.floor(p / width);
    const x = p - y * width;
    if (y > 0) seed(p - width);
    if (x > 0) seed(p - 1);
    if (x < width - 1) seed(p + 1);
    if (y < height - 1) seed(p + width);
  }
  return outside.map((isOutside) => (isOutside ? 0 : 1));
}

/**
 * The binary heap of scikit-image's watershed (heap_general.pxi): smallest (value, age) first,
 * pushed by sifting up, popped by moving the last item to the root and sifting down. Ties
 * between markers (all age 0) are settled by this exact structure, so it is repeated as is, in
 * typed arrays sized once (each pixel enters at most once).
 */
class WatershedHeap {
  /** @param {number} capacity */
  constructor(capacity) {
    this.values = new Float64Array(capacity);
    this.ages = new Int32Array(capacity);
    this.indices = new Int32Array(capacity);
    this.size = 0;
  }

  /** @param {number} a @param {number} b */
  smaller(a, b) {
    const va = this.values[a];
    const vb = this.values[b];
    return va !== vb ? va < vb : this.ages[a] < this.ages[b];
  }

  /** @param {number} a @param {number} b */
  swap(a, b) {
    const {values, ages, indices} = this;
    const value = values[a]; values[a] = values[b]; values[b] = value;
    const age = ages[a]; ages[a] = ages[b]; ages[b] = age;
    const index = indices[a]; indices[a] = indices[b]; indices[b] = index;
  }

  /** @param {number} value @param {number} age @param {number} index */
  push(value, age, index) {
    let child = this.size++;
    this.values[child] = value;
    this.ages[child] = age;
    this.indices[child] = index;
    while (child > 0) {
      const parent = ((child + 1) >> 1) - 1;
      if (!this.smaller(child, parent)) break;
      this.swap(parent, child);
      child = parent;
    }
  }

  /** @returns {number} the pixel index of the smallest item */
  pop() {
    const popped = this.indices[0];
    const items = --this.size;
    this.swap(0, items);
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      const right = left + 1;
      if (left >= items) break;
      let smallest = i;
      if (this.smaller(left, i)) smallest = left;
      if (right < items && this.smaller(right, smallest)) smallest = right;
      if (smallest === i) break;
      this.swap(i, smallest);
      i = smallest;
    }
    return popped;
  }
}

/**
 * skimage.segmentation.watershed(elevation, markers, mask=mask) as scikit-image 0.26 runs it,
 * 4-connected, no compactness: pixels are taken from the heap in order of their flooding cost,
 * their own elevation but never less than the cost of the pixel that reached them (markers at
 * their own elevation), and each neighbour is labelled when it is first reached.
 * @param {Float64Array | Float32Array} elevation
 * @param {Int32Array} markers
 * @param {Uint8Array} mask
 * @param {number} height
 * @param {number} width
 * @returns {Int32Array}
 */
export function watershed(elevation, markers, mask, height, width) {
  const output = new Int32Array(height * width);
  const heap = new WatershedHeap(height * width);
  for (let p = 0; p < markers.length; p++) {
    if (markers[p] && mask[p]) {
      output[p] = markers[p];
      heap.push(elevation[p], 0, p);
    }
  }
  let age = 1;
  let cost = 0;
  /** @param {number} q @param {number} p */
  const reach = (q, p) => {
    if (!mask[q] || output[q]) return;
    age += 1;
    output[q] = output[p];
    heap.push(elevation[q] < cost ? cost : elevation[q], age, q);
  };
  while (heap.size > 0) {
    cost = heap.values[0];
    const p = heap.pop();
    const y = Math.floor(p / width);
    const x = p - y * width;
    // skimage's neighbour order: up, left, right, down.
    if (y > 0) reach(p - width, p);
    if (x > 0) reach(p - 1, p);
    if (x < width - 1) reach(p + 1, p);
    if (y < height - 1) reach(p + width, p);
  }
  return output;
}

/**
 * Probabilities (H*W*K, row-major, K = 3 or 4) -> instance ids (H*W), 0 = background, ids 1..N.
 * @param {Float32Array} probabilities
 * @param {number} height
 * @param {number} width
 * @param {InstanceParams} params
 * @returns {Int32Array}
 */
export function instancesFromProbabilities(probabilities, height, width, params) {
  const count = height * width;
  const channels = probabilities.length / count;
  if (channels !== 3 && channels !== 4) {
    throw new Error(`instance post-processing needs 3 or 4 probabilities per pixel, got ${channels}`);
  }
  const seedChannel = seedClass(channels);
  // numpy compares float32 arrays with a Python float in float32.
  const foregroundCut = Math.fround(params.foreground_threshold);
  const seedCut = Math.fround(params.interior_threshold);
  let foreground = new Uint8Array(count);
  for (let p = 0; p < count; p++) {
    foreground[p] = Math.fround(1 - probabilities[channels * p + BACKGROUND]) >= foregroundCut ? 1 : 0;
  }
  foreground = fillHoles(foreground, height, width);
  let seeds = new Uint8Array(count);
  let elevation = new Float64Array(count);
  for (let p = 0; p < count; p++) {
    const seedProbability = probabilities[channels * p + seedChannel];
    seeds[p] = seedProbability >= seedCut && foreground[p] ? 1 : 0;
    elevation[p] = -seedProbability;
  }
  // Seeds smaller than a quarter of the smallest object are noise, not nuclei.
  const smallestSeed = Math.max(1, Math.floor(params.min_size / 4));
  let markers;
  if (params.marker_min_distance > 0) {
    // Specks of "boundary" inside a textured nucleus are holes, which would move the peaks.
    seeds = withoutSmallRegions(fillHoles(seeds, height, width), height, width, smallestSeed);
    const distance = distanceTransform(seeds, height, width);
    markers = distancePeaks(distance, height, width, params.marker_min_distance);
    elevation = distance.map((value) => -value);
  } else {
    markers = sequentialWithoutSmall(labelComponents(seeds, height, width), smallestSeed);
  }
  const flooded = watershed(elevation, markers, foreground, height, width);
  if (params.keep_unseeded === false) return sequentialWithoutSmall(flooded, params.min_size);
  let top = 0;
  for (const id of flooded) if (id > top) top = id;
  const unseededMask = new Uint8Array(count);
  for (let p = 0; p < count; p++) unseededMask[p] = foreground[p] && !flooded[p] ? 1 : 0;
  const unseeded = labelComponents(unseededMask, height, width);
  const instanceLabels = flooded.map((id, p) => (unseeded[p] > 0 ? unseeded[p] + top : id));
  return sequentialWithoutSmall(instanceLabels, params.min_size);
}

// Parity of web/flips.js with unet/runtime/flips.py: the same stand-in model, which sees the image
// from its top-left corner only, averaged over the flips on tensors Python wrote
// (`WEB_FIXTURES=DIR node --test web/test/`, tests/test_web_parity.py).
import assert from 'node:assert/strict';
import {readFileSync, readdirSync} from 'node:fs';
import {join} from 'node:path';
import {test} from 'node:test';

import {flipAveraged} from '../flips.js';
import {fixtureFolder, readArray} from './fixtures.js';

const folder = fixtureFolder('flips');
const cases = readdirSync(folder).filter((name) => name.endsWith('.json'));

/**
 * tests/test_flips.py's running_sum_from_top_left of a (1, h, w, depth) tensor.
 * @param {Float32Array} tensor @param {number} height @param {number} width
 */
function runningSumFromTopLeft(tensor, height, width) {
  const depth = tensor.length / (height * width);
  const out = Float32Array.from(tensor);
  const at = (/** @type {number} */ y, /** @type {number} */ x, /** @type {number} */ d) => (y * width + x) * depth + d;
  for (let y = 0; y < height; y++) for (let x = 1; x < width; x++) for (let d = 0; d < depth; d++) {
    out[at(y, x, d)] += out[at(y, x - 1, d)];
  }
  for (let y = 1; y < height; y++) for (let x = 0; x < width; x++) for (let d = 0; d < depth; d++) {
    out[at(y, x, d)] += out[at(y - 1, x, d)];
  }
  return out;
}

test('flips fixtures are present', () => {
  assert.ok(cases.length > 0, `no fixtures in ${folder}`);
});

for (const name of cases) {
  test(`flip average gives Python's output: ${name}`, async () => {
    const fixture = JSON.parse(readFileSync(join(folder, name), 'utf8'));
    const [height, width] = fixture.size;
    const tensor = readArray(join(folder, fixture.tensor), 'float32');
    const expected = readArray(join(folder, fixture.expected), 'float32');
    let calls = 0;
    const run = async (/** @type {Float32Array} */ input) => {
      calls += 1;
      return runningSumFromTopLeft(input, height, width);
    };
    const actual = await flipAveraged(run, tensor, height, width);
    assert.equal(calls, 4);
    assert.equal(actual.length, expected.length);
    let worst = 0;
    for (let i = 0; i < expected.length; i++) {
      worst = Math.max(worst, Math.abs(actual[i] - expected[i]) / Math.max(1, Math.abs(expected[i])));
    }
    assert.ok(worst < 1e-5, `relative difference ${worst}`);
  });
}

// Parity of web/postprocess.js (and instances.js) with the Python runtime's postprocess, on
// model outputs Python wrote: `WEB_FIXTURES=DIR node --test web/test/` (tests/test_web_parity.py).
import assert from 'node:assert/strict';
import {readFileSync, readdirSync} from 'node:fs';
import {join} from 'node:path';
import {test} from 'node:test';

import {segmentProbabilities} from '../postprocess.js';
import {fixtureFolder, readArray} from './fixtures.js';

const folder = fixtureFolder('postprocess');
const cases = readdirSync(folder).filter((name) => name.endsWith('.json'));

/** @param {ArrayLike<number>} actual @param {ArrayLike<number>} expected */
function differing(actual, expected) {
  let count = 0;
  for (let i = 0; i < expected.length; i++) if (actual[i] !== expected[i]) count += 1;
  return count;
}

test('postprocess fixtures are present', () => {
  assert.ok(cases.length > 0, `no fixtures in ${folder}`);
});

for (const name of cases) {
  test(`postprocess gives Python's masks: ${name}`, () => {
    const fixture = JSON.parse(readFileSync(join(folder, name), 'utf8'));
    const probabilities = readArray(join(folder, fixture.probabilities), 'float32');
    const result = segmentProbabilities(probabilities, fixture.metadata, fixture.size, fixture.threshold);
    const classMask = readArray(join(folder, fixture.class_mask), 'uint8');
    assert.equal(result.classMask.length, classMask.length);
    assert.equal(differing(result.classMask, classMask), 0, 'class masks differ');
    if (fixture.instance_labels) {
      const instanceLabels = readArray(join(folder, fixture.instance_labels), 'int32');
      assert.equal(differing(/** @type {Int32Array} */ (result.instanceLabels), instanceLabels), 0,
        'instance labels differ');
      assert.equal(result.instanceCount, fixture.instance_count);
    }
  });
}

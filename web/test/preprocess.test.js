// Parity of web/preprocess.js with the Python runtime's `preprocess`, on fixtures that
// tests/test_web_parity.py writes with Python: `WEB_FIXTURES=DIR node --test web/test/`.
import assert from 'node:assert/strict';
import {readFileSync, readdirSync} from 'node:fs';
import {join} from 'node:path';
import {test} from 'node:test';

import {preprocess} from '../preprocess.js';
import {fixtureFolder, readArray} from './fixtures.js';

const folder = fixtureFolder('preprocess');
const TOLERANCE = 1e-6;
const cases = readdirSync(folder).filter((name) => name.endsWith('.json'));

test('preprocess fixtures are present', () => {
  assert.ok(cases.length > 0, `no fixtures in ${folder}`);
});

for (const name of cases) {
  test(`preprocess matches Python: ${name}`, () => {
    const fixture = JSON.parse(readFileSync(join(folder, name), 'utf8'));
    const pixels = {data: readArray(join(folder, fixture.image), fixture.dtype), height: fixture.height,
                    width: fixture.width, channels: fixture.channels};
    const {tensor, shape} = preprocess(pixels, fixture.metadata);
    assert.deepEqual(shape, fixture.expected_shape);
    const expected = readArray(join(folder, fixture.expected), 'float32');
    assert.equal(tensor.length, expected.length);
    let worst = 0;
    for (let i = 0; i < tensor.length; i++) worst = Math.max(worst, Math.abs(tensor[i] - expected[i]));
    assert.ok(worst <= TOLERANCE, `largest difference ${worst} > ${TOLERANCE}`);
    console.log(`${name}: largest difference ${worst}`);
  });
}

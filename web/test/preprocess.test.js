// Parity of web/preprocess.js with the Python runtime's `preprocess`, on fixtures that
// tests/test_web_parity.py writes with Python: `WEB_FIXTURES=DIR node --test web/test/`.
import assert from 'node:assert/strict';
import {existsSync, readFileSync, readdirSync} from 'node:fs';
import {join} from 'node:path';
import {test} from 'node:test';

import {preprocess} from '../preprocess.js';

const folder = process.env.WEB_FIXTURES && join(process.env.WEB_FIXTURES, 'preprocess');
const TOLERANCE = 1e-6;

/** @param {string} path @param {string} dtype */
function readArray(path, dtype) {
  const bytes = readFileSync(path);
  const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  return {uint8: () => new Uint8Array(buffer), uint16: () => new Uint16Array(buffer),
          float32: () => new Float32Array(buffer)}[dtype]();
}

const cases = folder && existsSync(folder) ? readdirSync(folder).filter((name) => name.endsWith('.json')) : [];

test('fixtures are present (run through tests/test_web_parity.py)', {skip: !folder || !existsSync(folder)}, () => {
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

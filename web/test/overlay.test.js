// Parity of web/overlay.js with unet/runtime/overlay.py: the same overlay bytes for the same
// image and segmentation, on fixtures Python wrote (tests/test_web_parity.py).
import assert from 'node:assert/strict';
import {readFileSync, readdirSync} from 'node:fs';
import {join} from 'node:path';
import {test} from 'node:test';

import {overlayPixels} from '../overlay.js';
import {fixtureFolder, readArray} from './fixtures.js';

const folder = fixtureFolder('overlay');
const cases = readdirSync(folder).filter((name) => name.endsWith('.json'));

test('overlay fixtures are present', () => {
  assert.ok(cases.length > 0, `no fixtures in ${folder}`);
});

for (const name of cases) {
  test(`overlay draws Python's pixels: ${name}`, () => {
    const fixture = JSON.parse(readFileSync(join(folder, name), 'utf8'));
    const pixels = {data: readArray(join(folder, fixture.image), fixture.dtype), height: fixture.height,
      width: fixture.width, channels: fixture.channels};
    const segmentation = {classMask: readArray(join(folder, fixture.class_mask), 'uint8'),
      instanceLabels: fixture.instance_labels ? readArray(join(folder, fixture.instance_labels), 'int32') : null,
      height: fixture.height, width: fixture.width, instanceCount: null};
    const rgba = overlayPixels(pixels, segmentation, fixture.class_colours, fixture.opacity ?? undefined);
    const expected = readArray(join(folder, fixture.expected), 'uint8');
    let differing = 0;
    for (let p = 0; p < expected.length / 3; p++) {
      for (let c = 0; c < 3; c++) if (rgba[4 * p + c] !== expected[3 * p + c]) differing += 1;
    }
    assert.equal(differing, 0, `${differing} channel values differ`);
  });
}

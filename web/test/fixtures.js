// Where the fixtures that tests/test_web_parity.py writes are found, and how they are read.
// Without them the tests fail, saying how to make them: a run with none would prove nothing.
import {existsSync, readFileSync} from 'node:fs';
import {join} from 'node:path';

/**
 * The folder of one kind of fixture; throws when WEB_FIXTURES does not point at Python's output.
 * @param {string} kind
 * @returns {string}
 */
export function fixtureFolder(kind) {
  const root = process.env.WEB_FIXTURES;
  const folder = root && join(root, kind);
  if (!folder || !existsSync(folder)) {
    throw new Error(`no ${kind} fixtures: run \`pytest tests/test_web_parity.py\`, which writes them ` +
      'and runs these tests with WEB_FIXTURES set');
  }
  return folder;
}

/** @param {string} path @param {'uint8' | 'uint16' | 'int32' | 'float32'} dtype */
export function readArray(path, dtype) {
  const bytes = readFileSync(path);
  const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  return {uint8: () => new Uint8Array(buffer), uint16: () => new Uint16Array(buffer),
          int32: () => new Int32Array(buffer), float32: () => new Float32Array(buffer)}[dtype]();
}

// Builds a JavaScript component with componentize-js's API:
//   node componentize.mjs SOURCE.js WIT_DIR WORLD OUT.wasm   (npm run build)
// (jco 1.35's `componentize` command failed here before building, with "failed to get
// path metadata" while probing the WIT folder; componentize-js's own API works.) fluid offers no
// wasi:http, so the http and fetch-event features are left out.
import { componentize } from '@bytecodealliance/componentize-js';
import { writeFile } from 'node:fs/promises';

const [sourcePath, witPath, worldName, out] = process.argv.slice(2);
const { component } = await componentize({ sourcePath, witPath, worldName, disableFeatures: ['http', 'fetch-event'] });
await writeFile(out, component);

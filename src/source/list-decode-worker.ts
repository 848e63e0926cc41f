// The page decode thread's entry (list-decode.ts). Imported on the main thread (the bundle's compile
// cache step imports every file), it does nothing.
import { isMainThread, parentPort } from 'node:worker_threads';
import { serveListDecode } from './list-decode.js';

if (!isMainThread && parentPort) serveListDecode(parentPort);

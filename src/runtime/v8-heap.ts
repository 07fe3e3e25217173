import { setFlagsFromString } from 'node:v8';

/**
 * V8 settings the gateway runs with, applied before its modules load (bin/gateway.js; the benches that
 * run it in their own process call this too). Buffers' memory, outside V8's heap, is counted within the
 * heap's own growing limit, rather than starting a full collection every time it grows by a fixed
 * amount: streaming a study allocates several times its size in short-lived Buffers, and each such
 * collection marks the whole heap, the R4 definitions included (docs/decisions/0054).
 */
export function applyHeapSettings(): void {
  setFlagsFromString('--external-memory-accounted-in-global-limit');
}

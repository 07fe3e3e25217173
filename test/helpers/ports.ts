import { freeLoopbackPort } from '../../src/net/free-port.ts';

/** A TCP port on loopback that was free a moment ago, outside the range of outgoing connections. */
export const freePort = (): Promise<number> => freeLoopbackPort();

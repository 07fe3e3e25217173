/**
 * The HTTP client of bench:receive, in a worker thread of its own (as bench:intake's load generator), so
 * the gateway's main thread carries only the gateway: node:http with keep-alive, CALLERS requests in
 * flight. Messages: { load: string[] } (acknowledged), then { seconds } -> { n, ms, cpuMs }.
 */
import { Agent, request } from 'node:http';
import { parentPort, workerData } from 'node:worker_threads';

const { url, callers } = workerData as { url: string; callers: number };
const agent = new Agent({ keepAlive: true, maxSockets: callers });
let envelopes: string[] = [];

function post(body: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/jose', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          res.statusCode === 200
            ? resolve()
            : reject(new Error(`HTTP ${res.statusCode}: ${Buffer.concat(chunks).toString()}`)),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

parentPort!.on('message', async (m: { load?: string[]; seconds?: number }) => {
  if (m.load) {
    envelopes = m.load;
    parentPort!.postMessage({ loaded: envelopes.length });
    return;
  }
  const cpu0 = process.threadCpuUsage();
  const start = performance.now();
  const until = start + (m.seconds ?? 1) * 1000;
  let next = 0;
  let n = 0;
  await Promise.all(
    Array.from({ length: callers }, async () => {
      while (performance.now() < until && next < envelopes.length) {
        await post(envelopes[next++]!);
        n++;
      }
    }),
  );
  const cpu = process.threadCpuUsage(cpu0);
  parentPort!.postMessage({ n, ms: performance.now() - start, cpuMs: (cpu.user + cpu.system) / 1000 });
});

/**
 * Where the gateway's main thread spends intake or receive, from a V8 CPU profile of bench:intake or
 * bench:receive (the gateway runs in the bench's process):
 *   node --cpu-prof --cpu-prof-dir=DIR bench/intake.ts 20   (or bench/receive.ts; the main thread's
 *   profile is the one whose name ends in .0.001.cpuprofile)
 *   node bench/cpu-breakdown.ts DIR/CPU…0.001.cpuprofile [seconds [intake|receive]]
 * It takes the busiest window of the pipeline (the most samples under acceptSubmission, or under
 * receive.ts's receive; 10 s by default) and gives each sample to the first stage found anywhere on its
 * stack; and idle. Intake: validate, parse, seal, sign, commit, auth, directory, the rest of intake, the
 * gateway's hooks, Fastify, Node's HTTP. Receive: open (JWE checks, HSM key agreement, AES-GCM), verify
 * (JWS checks, claims JSON, signature), directory (the sender and its keys), receipt (HSM sign), commit,
 * the rest of receive, the gateway's hooks, Fastify, Node's HTTP.
 */
import { readFileSync } from 'node:fs';

interface Frame {
  functionName: string;
  url: string;
}
interface Node {
  id: number;
  callFrame: Frame;
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
}

const [file, seconds = '10', pipeline = 'intake'] = process.argv.slice(2);
if (!file) throw new Error('usage: node bench/cpu-breakdown.ts PROFILE.cpuprofile [seconds [intake|receive]]');
const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const stack = (id: number): Frame[] => {
  const frames: Frame[] = [];
  for (let x: number | undefined = id; x !== undefined; x = parent.get(x)) frames.push(byId.get(x)!.callFrame);
  return frames;
};

const HTTP_STAGES: Array<[string, (f: Frame) => boolean]> = [
  ['gateway hooks', (f) => f.url.includes('/plugins/')],
  ['fastify', (f) => /node_modules\/(fastify|find-my-way|avvio|@fastify|fast-json-stringify|pino)/.test(f.url)],
  ['node http, net', (f) => f.url.startsWith('node:')],
];

const RECEIVE_STAGES: Array<[string, (f: Frame) => boolean]> = [
  ['directory', (f) => f.url.includes('/src/directory/')],
  ['receipt (HSM sign)', (f) => f.functionName === 'signReceipt'],
  ['open (JWE, HSM derive, GCM)', (f) => f.functionName === 'openCompactJwe' || f.functionName === 'deriveConcatKdf'],
  ['verify (JWS, claims, ES256)', (f) => f.functionName === 'verifySignedJws' || f.url.includes('node_modules/jose/')],
  [
    'database (pg: the write and the reads)',
    (f) =>
      /^(writeInboxMessages|insertInboxMessages|appendAudit)$/.test(f.functionName) ||
      /node_modules\/pg(-pool|-protocol)?\//.test(f.url),
  ],
  ['HSM, other', (f) => f.url.includes('pkcs11js') || f.url.includes('/hsm/')],
  ['receive, other', (f) => /\/src\/(inbound|protocol|keys|fhir|audit|compliance)\//.test(f.url)],
  ...HTTP_STAGES,
];

const INTAKE_STAGES: Array<[string, (f: Frame) => boolean]> = [
  ['validate', (f) => f.functionName === 'checkBundle'],
  ['parse', (f) => f.functionName === 'parseFhirJson' || f.functionName === 'decodeJsonBody'],
  ['seal', (f) => f.functionName === 'sealCompact'],
  ['sign', (f) => f.functionName === 'signCompact' || f.url.includes('pkcs11js') || f.url.includes('/hsm/')],
  ['commit', (f) => f.functionName === 'writeIntakes' || /node_modules\/pg(-pool|-protocol)?\//.test(f.url)],
  ['auth', (f) => f.url.includes('/src/auth/') || f.url.includes('/plugins/guard')],
  ['directory', (f) => f.url.includes('/src/directory/')],
  ['intake, other', (f) => /\/src\/(outbound|keys|fhir|audit)\//.test(f.url)],
  ...HTTP_STAGES,
];

const STAGES = pipeline === 'receive' ? RECEIVE_STAGES : INTAKE_STAGES;
const inPipeline = (f: Frame) =>
  pipeline === 'receive'
    ? f.functionName === 'receive' && f.url.includes('/src/inbound/receive')
    : f.functionName === 'acceptSubmission';

let t = p.startTime;
const at = p.timeDeltas.map((d) => (t += d));
const inIntake = p.samples.map((s) => stack(s).some(inPipeline));
const span = Number(seconds) * 1e6;
let best = 0;
let from = 0;
for (let i = 0, j = 0, n = 0; i < at.length; i++) {
  if (inIntake[i]) n++;
  while (at[i]! - at[j]! > span) if (inIntake[j++]) n--;
  if (n > best) [best, from] = [n, j];
}
const counts = new Map<string, number>();
let total = 0;
for (let i = from; i < at.length && at[i]! - at[from]! <= span; i++, total++) {
  const frames = stack(p.samples[i]!);
  const leaf = frames[0]!.functionName;
  const stage =
    leaf === '(idle)'
      ? 'idle'
      : leaf === '(garbage collector)'
        ? 'gc'
        : (STAGES.find(([, test]) => frames.some(test))?.[0] ?? 'other');
  counts.set(stage, (counts.get(stage) ?? 0) + 1);
}
const busy = total - (counts.get('idle') ?? 0);
console.log(`busiest ${seconds} s of ${pipeline}: main thread ${((100 * busy) / total).toFixed(0)}% busy`);
for (const [stage, n] of [...counts].sort((x, y) => y[1] - x[1]))
  if (stage !== 'idle') console.log(`  ${stage.padEnd(30)} ${((100 * n) / busy).toFixed(1).padStart(5)} % of busy`);

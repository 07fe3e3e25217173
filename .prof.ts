import { readFileSync, readdirSync, statSync } from 'node:fs';
const files = readdirSync('/tmp/prof').map((f) => ({ f, s: statSync('/tmp/prof/' + f).size })).sort((a, b) => b.s - a.s).slice(0, 2);
for (const { f } of files) {
  const p = JSON.parse(readFileSync('/tmp/prof/' + f, 'utf8'));
  const self = new Map<number, number>();
  const dt = p.timeDeltas as number[];
  (p.samples as number[]).forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (dt[i] ?? 0)));
  const byName = new Map<string, number>();
  for (const n of p.nodes) { const k = `${n.callFrame.functionName || '(anon)'} ${n.callFrame.url.split('/').slice(-2).join('/')}:${n.callFrame.lineNumber}`; byName.set(k, (byName.get(k) ?? 0) + (self.get(n.id) ?? 0)); }
  console.log('==', f);
  for (const [k, v] of [...byName.entries()].sort((a, b) => b[1] - a[1]).slice(0, 16)) console.log((v / 1e6).toFixed(3), k);
}

/** What /proc says of a benchmarked process (Linux). */
import { readdirSync, readFileSync } from 'node:fs';

/** The fields of a /proc stat line the benches read; CPU in seconds (clock ticks of 1/100 s). */
function parseStat(stat: string): { name: string; ppid: number; user: number; system: number } {
  const close = stat.lastIndexOf(')'); // the name may itself hold parentheses
  const f = stat.slice(close + 2).split(' ');
  return {
    name: stat.slice(stat.indexOf('(') + 1, close),
    ppid: Number(f[1]),
    user: Number(f[11]) / 100,
    system: Number(f[12]) / 100,
  };
}

/** CPU seconds a process has used so far, in user space and in the kernel. */
export function cpuSplit(pid: number): { user: number; system: number } {
  return parseStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
}

/** One /proc file of each of a process's threads (`stat`, `status`), skipping a thread that ended meanwhile. */
function* threadFiles(pid: number, file: string): Generator<string> {
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      yield readFileSync(`/proc/${pid}/task/${t}/${file}`, 'utf8');
    } catch {
      // the thread ended between the listing and the read
    }
  }
}

/** CPU seconds (user + system) used so far by each kind of thread of a process, by thread name (comm). */
export function threadCpu(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const stat of threadFiles(pid, 'stat')) {
    const t = parseStat(stat);
    const name = t.name.replace(/\d+$/, ''); // libuv-worker3 and libuv-worker4 are one kind
    out.set(name, (out.get(name) ?? 0) + t.user + t.system);
  }
  return out;
}

/** What each kind of thread used between two threadCpu readings, busiest first, as `name 1.2 s`. */
export function threadCpuDelta(before: Map<string, number>, after: Map<string, number>): string {
  return [...after]
    .map(([name, s]) => [name, s - (before.get(name) ?? 0)] as const)
    .filter(([, s]) => s >= 0.05)
    .sort((x, y) => y[1] - x[1])
    .map(([name, s]) => `${name} ${s.toFixed(1)} s`)
    .join(', ');
}

/** CPU seconds (user + system) a process has used so far. */
export function cpuSeconds(pid: number): number {
  const { user, system } = cpuSplit(pid);
  return user + system;
}

/** Context switches of all the process's threads so far: each is a thread going to sleep or being woken (costly on a VM). */
export function contextSwitches(pid: number): number {
  let n = 0;
  for (const status of threadFiles(pid, 'status'))
    n +=
      Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(status)![1]) +
      Number(/nonvoluntary_ctxt_switches:\s+(\d+)/.exec(status)![1]);
  return n;
}

/** Peak resident memory (VmHWM) of a process, in bytes. */
export function vmHwm(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

const ticks = (stat: string) => {
  const s = parseStat(stat);
  return { ppid: s.ppid, cpu: s.user + s.system };
};

/** CPU seconds of one thread of this process (Linux task id; the main thread's is the pid). */
export function threadCpuSeconds(tid: number, pid = process.pid): number {
  return ticks(readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')).cpu;
}

/** CPU seconds so far of each thread (by task id) and each descendant process (by pid). */
export interface CpuSnapshot {
  threads: Map<number, number>;
  children: Map<number, number>;
}

/**
 * This process's threads other than the main one (the load generator's worker, the libuv pool with the
 * HSM calls, V8's helpers) and its descendant processes (the embedded PostgreSQL and its backends): what
 * else a request costs the machine.
 */
export function cpuElsewhere(pid = process.pid): CpuSnapshot {
  const threads = new Map<number, number>();
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    if (Number(t) === pid) continue;
    try {
      threads.set(Number(t), threadCpuSeconds(Number(t), pid));
    } catch {
      // the thread ended between the listing and the read
    }
  }
  const byParent = new Map<number, Array<{ pid: number; cpu: number }>>();
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const s = ticks(readFileSync(`/proc/${p}/stat`, 'utf8'));
      byParent.set(s.ppid, [...(byParent.get(s.ppid) ?? []), { pid: Number(p), cpu: s.cpu }]);
    } catch {
      // the process ended between the listing and the read
    }
  }
  const children = new Map<number, number>();
  const walk = (parent: number): void => {
    for (const c of byParent.get(parent) ?? []) {
      children.set(c.pid, c.cpu);
      walk(c.pid);
    }
  };
  walk(pid);
  return { threads, children };
}

/** CPU seconds used between two snapshots by what the later one sees (a thread or process gone by then is not counted). */
export function cpuBetween(before: CpuSnapshot, after: CpuSnapshot): { otherThreads: number; children: number } {
  const sum = (a: Map<number, number>, b: Map<number, number>) =>
    [...b].reduce((n, [id, cpu]) => n + cpu - (a.get(id) ?? 0), 0);
  return { otherThreads: sum(before.threads, after.threads), children: sum(before.children, after.children) };
}

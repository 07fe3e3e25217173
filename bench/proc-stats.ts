/** What /proc says of a benchmarked process (Linux). */
import { readdirSync, readFileSync } from 'node:fs';

/** CPU seconds (user + system) a process has used so far. */
export function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (100/s)
}

/** Context switches of all the process's threads so far: each is a thread going to sleep or being woken (costly on a VM). */
export function contextSwitches(pid: number): number {
  let n = 0;
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    let status: string;
    try {
      status = readFileSync(`/proc/${pid}/task/${t}/status`, 'utf8');
    } catch {
      continue; // the thread ended between the listing and the read
    }
    n +=
      Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(status)![1]) +
      Number(/nonvoluntary_ctxt_switches:\s+(\d+)/.exec(status)![1]);
  }
  return n;
}

/** Peak resident memory (VmHWM) of a process, in bytes. */
export function vmHwm(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

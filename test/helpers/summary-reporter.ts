import type { Reporter, TestModule } from 'vitest/node';

/**
 * Prints, at the very end of the log, each failed test with the first line of
 * its error, then one plain closing line ("Tests: N passed, N failed, N
 * skipped") that any CI log reader understands. A flaky failure can then be
 * named from the log's tail alone.
 */
export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    let passed = 0;
    let skipped = 0;
    const failures: string[] = [];
    for (const mod of testModules) {
      for (const test of mod.children.allTests()) {
        const result = test.result();
        if (result.state === 'passed') passed++;
        else if (result.state === 'failed')
          failures.push(
            `${mod.moduleId.replace(/^.*\/test\//, 'test/')} > ${test.fullName}: ${firstLine(result.errors?.[0]?.message)}`,
          );
        else skipped++;
      }
      if (mod.state() === 'failed' && [...mod.children.allTests()].length === 0) {
        failures.push(`${mod.moduleId.replace(/^.*\/test\//, 'test/')}: ${firstLine(mod.errors()[0]?.message)}`);
      }
    }
    const list = failures.map((f) => `FAILED ${f}\n`).join('');
    process.stdout.write(`\n${list}Tests: ${passed} passed, ${failures.length} failed, ${skipped} skipped\n`);
  }
}

const firstLine = (message: string | undefined) => (message ?? 'no error message').split('\n')[0]!.slice(0, 300);

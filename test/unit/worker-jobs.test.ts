import { describe, expect, it } from 'vitest';
import { DELIVERY_KINDS } from '../../src/outbound/delivery-kinds.ts';
import {
  assertDeliverPayload,
  assertForwardPayload,
  DELIVER_IMAGING_TASK,
  DELIVER_TASK,
  FORWARD_TASK,
  jobSpecsSql,
} from '../../src/queue/jobs.ts';
import { taskList } from '../../src/worker/task-list.ts';

const ID = '6f1c2a0e-8a55-4f0e-9d59-2f5b1b7c9e01';

describe('the jobs catalogue', () => {
  it('the worker runs a task for every delivery kind and the inbox forward', () => {
    const tasks = Object.keys(taskList({} as never));
    expect(Object.values(DELIVERY_KINDS).map((k) => k.task)).toEqual([DELIVER_TASK, DELIVER_IMAGING_TASK]);
    expect(tasks).toEqual(expect.arrayContaining([DELIVER_TASK, DELIVER_IMAGING_TASK, FORWARD_TASK]));
  });

  it('payloads are exactly one id: anything more (content, PHI) is refused', () => {
    expect(assertForwardPayload({ messageId: ID })).toEqual({ messageId: ID });
    expect(assertDeliverPayload({ deliveryId: ID })).toEqual({ deliveryId: ID });
    for (const bad of [{ messageId: ID, name: 'Jane Doe' }, { deliveryId: ID }, { messageId: 'x' }, [ID], null])
      expect(() => assertForwardPayload(bad)).toThrow(/inbox-forward: payload/);
  });

  it('one job-spec SQL: the payload names the id field, a forward job key is prefixed', () => {
    expect(jobSpecsSql(DELIVER_TASK, 'x')).toContain(`json_build_object('deliveryId', j.id)`);
    expect(jobSpecsSql(DELIVER_TASK, 'x')).toContain(`'' || j.id::text`);
    expect(jobSpecsSql(FORWARD_TASK, 'x')).toContain(`json_build_object('messageId', j.id)`);
    expect(jobSpecsSql(FORWARD_TASK, 'x')).toContain(`'inbox-forward:' || j.id::text`);
  });
});

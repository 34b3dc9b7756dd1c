// jstasks: fluid task components written in JavaScript (world fluid:scheduler/task@0.1.1),
// built by componentize-js. Task `js-double` doubles params `n` and queues a run of
// `forward_to` (when given) with {"doubled": 2n} as a child of this run; a negative `n`
// aborts the run (never retried).
import { log, queueRun } from 'fluid:scheduler/host@0.1.1';

export const taskComponent = {
  definitions() {
    const schema = { type: 'object', properties: { n: { type: 'integer' }, forward_to: { type: 'string' } } };
    return [{
      name: 'js-double',
      description: 'Doubles n (JavaScript)',
      schedule: undefined,
      priority: 'medium',
      timeoutMs: 30000n,
      maxConcurrency: 0,
      retry: undefined,
      tags: ['javascript'],
      paramsSchema: JSON.stringify(schema),
    }];
  },
  run(context) {
    const params = JSON.parse(context.run.paramsJson);
    const n = params.n ?? 0;
    if (n < 0) throw { tag: 'aborted', val: 'n is negative' };
    log('info', `js-double ${n} -> ${2 * n}`);
    if (params.forward_to) {
      try {
        queueRun({ task: params.forward_to, paramsJson: JSON.stringify({ doubled: 2 * n }), priority: undefined, fromRunId: context.run.id });
      } catch (e) {
        throw { tag: 'failed', val: `cannot queue ${params.forward_to}: ${JSON.stringify(e)}` };
      }
    }
  },
};

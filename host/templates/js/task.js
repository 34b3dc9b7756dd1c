// {{name}}: a fluid task component in JavaScript (world fluid:scheduler/task).
// {{name}}.greet takes typed params (a JSON schema the host checks when a run is queued)
// and queues a child run of {{name}}.log with what it made; {{name}}.log logs it.
import { log, queueRun } from 'fluid:scheduler/host@0.1.1';

const task = (name, description, schema) => ({
  name,
  description,
  schedule: undefined,
  priority: 'medium',
  timeoutMs: 5000n,
  maxConcurrency: 0,
  retry: undefined,
  tags: [],
  paramsSchema: schema ? JSON.stringify(schema) : undefined,
});

export const taskComponent = {
  definitions() {
    const schema = { type: 'object', properties: { name: { type: 'string', maxLength: 100 } }, required: ['name'], additionalProperties: false };
    return [task('{{name}}.greet', 'Greets someone, then logs it in a child run', schema), task('{{name}}.log', 'Logs a message')];
  },
  run(context) {
    const params = JSON.parse(context.run.paramsJson);
    if (context.run.task === '{{name}}.greet') {
      try {
        queueRun({ task: '{{name}}.log', paramsJson: JSON.stringify({ message: `hello, ${params.name}` }), priority: undefined, fromRunId: context.run.id });
      } catch (e) {
        throw { tag: 'failed', val: `cannot queue the child run: ${JSON.stringify(e)}` };
      }
    } else {
      log('info', params.message ?? '');
    }
  },
};

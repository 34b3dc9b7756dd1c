// {{name}}: a fluid plugin in JavaScript (world fluid:scheduler/plugin). It counts the runs
// of each task that succeeded or failed (a subscription), keeps them in a table of its own
// (storage), serves the counts at GET /plugins/{{name}}/routes/counts (a route), and says
// whether the db plugin is there to read history from (get-plugin).
import { ensureTable, upsert, select } from 'fluid:scheduler/storage@0.1.1';
import { getPlugin } from 'fluid:scheduler/host@0.1.1';

const text = (name) => ({ name, kind: 'text', nullable: false });

export const taskManagerPlugin = {
  register(_configJson) {
    // One row per run and state: a replayed event changes nothing.
    ensureTable({ name: 'counts', columns: [text('run_id'), text('task'), text('state')], primaryKey: ['run_id', 'state'], indexes: [] });
    return {
      name: '{{name}}',
      version: '0.1.0',
      subscriptions: [{ state: 'success', tag: '{{name}}' }, { state: 'failure', tag: '{{name}}' }],
      routes: [{ method: 'GET', path: '/counts', handler: 'counts' }],
    };
  },
  onEvents(events) {
    const rows = events.map((e) => [{ tag: 'text', val: e.run.id }, { tag: 'text', val: e.run.task }, { tag: 'text', val: e.run.state }]);
    if (rows.length > 0) upsert('counts', ['run_id', 'task', 'state'], rows);
  },
  call(method, _argsJson) {
    if (method !== 'counts') throw { tag: 'unknown-method', val: method };
    const rows = select('counts', { columns: ['task', 'state'], filters: [], order: [], after: undefined, limit: undefined });
    const counts = {};
    for (const [task, state] of rows) {
      counts[task.val] ??= {};
      counts[task.val][state.val] = (counts[task.val][state.val] ?? 0) + 1;
    }
    return JSON.stringify({ counts, history: getPlugin('db') !== undefined });
  },
};

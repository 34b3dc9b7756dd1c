// jsfailures: a fluid plugin written in JavaScript (world fluid:scheduler/plugin@0.1.1),
// built by componentize-js. Records every run that ends `failure` (id, task, error) in
// its own table, idempotently (upsert by id), and answers call("failures") with
// [[id, task, error], ...] ordered by id.
import { ensureTable, upsert, select } from 'fluid:scheduler/storage@0.1.1';
import { log } from 'fluid:scheduler/host@0.1.1';

const text = (name) => ({ name, kind: 'text', nullable: false });

export const taskManagerPlugin = {
  register(_configJson) {
    ensureTable({ name: 'failures', columns: [text('id'), text('task'), text('error')], primaryKey: ['id'], indexes: [] });
    log('info', 'jsfailures registered');
    return { name: 'jsfailures', version: '0.1.0', subscriptions: [{ state: 'failure', tag: 'record' }], routes: [] };
  },
  onEvents(events) {
    const rows = events.map((e) => [
      { tag: 'text', val: e.run.id },
      { tag: 'text', val: e.run.task },
      { tag: 'text', val: e.run.error ?? '' },
    ]);
    if (rows.length > 0) upsert('failures', ['id', 'task', 'error'], rows);
  },
  call(method, _argsJson) {
    if (method !== 'failures') throw { tag: 'unknown-method', val: method };
    const rows = select('failures', { columns: ['id', 'task', 'error'], filters: [], order: [{ column: 'id', descending: false }], after: undefined, limit: undefined });
    return JSON.stringify(rows.map((r) => r.map((v) => v.val)));
  },
};

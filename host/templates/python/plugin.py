"""{{name}}: a fluid plugin in Python (world fluid:scheduler/plugin).

It counts the runs of each task that succeeded or failed (a subscription), keeps them in a
table of its own (storage), serves the counts at GET /plugins/{{name}}/routes/counts (a
route), and says whether the db plugin is there to read history from (get-plugin).
"""
import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.task_manager_plugin import Registration, Route, Subscription
from wit_world.imports import host, storage
from wit_world.imports.types import CallError_Failed, CallError_UnknownMethod, TaskState

STATES = {TaskState.SUCCESS: "success", TaskState.FAILURE: "failure"}


def _text(name: str) -> storage.Column:
    return storage.Column(name=name, kind=storage.ColumnType.TEXT, nullable=False)


class TaskManagerPlugin(exports.TaskManagerPlugin):
    def register(self, config_json: str) -> Registration:
        # One row per run and state: a replayed event changes nothing.
        storage.ensure_table(storage.TableDef(name="counts", columns=[_text("run_id"), _text("task"), _text("state")],
                                              primary_key=["run_id", "state"], indexes=[]))
        subscriptions = [Subscription(state=s, tag="{{name}}") for s in STATES]
        routes = [Route(method="GET", path="/counts", handler="counts")]
        return Registration(name="{{name}}", version="0.1.0", subscriptions=subscriptions, routes=routes)

    def on_events(self, events) -> None:
        rows = [[storage.Value_Text(e.run.id), storage.Value_Text(e.run.task), storage.Value_Text(STATES.get(e.run.state, "other"))]
                for e in events]
        if rows:
            storage.upsert("counts", ["run_id", "task", "state"], rows)

    def call(self, method: str, args_json: str) -> str:
        if method != "counts":
            raise Err(CallError_UnknownMethod(method))
        try:
            rows = storage.select("counts", storage.Query(columns=["task", "state"], filters=[], order=[], after=None, limit=None))
        except Err as e:
            raise Err(CallError_Failed(str(e.value)))
        counts: dict = {}
        for task, state in rows:
            per_task = counts.setdefault(task.value, {})
            per_task[state.value] = per_task.get(state.value, 0) + 1
        return json.dumps({"counts": counts, "history": host.get_plugin("db") is not None})

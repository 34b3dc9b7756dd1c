"""pycount: a fluid plugin written in Python (world fluid:scheduler/plugin@0.1.0).

Keeps the last finished state of every run in its own table (an upsert per run id, so a
batch delivered twice changes nothing) and answers call("counts") with
{"TASK": {"STATE": n}}.
"""
import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.task_manager_plugin import Registration, Subscription
from wit_world.imports import host, storage
from wit_world.imports.types import CallError_UnknownMethod, CallError_Failed, TaskState

STATES = {TaskState.SUCCESS: "success", TaskState.FAILURE: "failure", TaskState.ABORTED: "aborted"}


def _col(name: str) -> storage.Column:
    return storage.Column(name=name, kind=storage.ColumnType.TEXT, nullable=False)


class TaskManagerPlugin(exports.TaskManagerPlugin):
    def register(self, config_json: str) -> Registration:
        storage.ensure_table(storage.TableDef(name="runs", columns=[_col("id"), _col("task"), _col("state")], primary_key=["id"], indexes=[]))
        subs = [Subscription(state=s, tag="count") for s in STATES]
        host.log(host.LogLevel.INFO, "pycount registered")
        return Registration(name="pycount", version="0.1.0", subscriptions=subs, routes=[])

    def on_events(self, events) -> None:
        rows = [[storage.Value_Text(e.run.id), storage.Value_Text(e.run.task), storage.Value_Text(STATES.get(e.run.state, "other"))] for e in events]
        if rows:
            storage.upsert("runs", ["id", "task", "state"], rows)

    def call(self, method: str, args_json: str) -> str:
        if method != "counts":
            raise Err(CallError_UnknownMethod(method))
        try:
            rows = storage.select("runs", storage.Query(columns=["task", "state"], filters=[], order=[], after=None, limit=None))
        except Err as e:
            raise Err(CallError_Failed(str(e.value)))
        counts: dict = {}
        for task, state in rows:
            per_task = counts.setdefault(task.value, {})
            per_task[state.value] = per_task.get(state.value, 0) + 1
        return json.dumps(counts)

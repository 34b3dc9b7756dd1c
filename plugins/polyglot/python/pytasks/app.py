"""pytasks: fluid task components written in Python (world fluid:scheduler/task@0.1.0).

Task `py-sum` adds params `a` and `b` and queues a run of `forward_to` (when given) with
{"sum": a + b} as a child of this run; a negative `a` aborts the run (never retried).
"""
import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.task_component import Context, TaskDef, TaskError_Aborted, TaskError_Failed
from wit_world.imports import host
from wit_world.imports.types import TaskPriority


class TaskComponent(exports.TaskComponent):
    def definitions(self):
        schema = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}, "forward_to": {"type": "string"}}}
        return [TaskDef(name="py-sum", description="Adds a and b (Python)", schedule=None, priority=TaskPriority.MEDIUM,
                        timeout_ms=30_000, max_concurrency=0, retry=None, tags=["python"], params_schema=json.dumps(schema))]

    def run(self, context: Context) -> None:
        params = json.loads(context.run.params_json)
        a, b = params.get("a", 0), params.get("b", 0)
        if a < 0:
            raise Err(TaskError_Aborted("a is negative"))
        host.log(host.LogLevel.INFO, f"py-sum {a} + {b} = {a + b}")
        target = params.get("forward_to")
        if target:
            try:
                host.queue_run(host.QueueRequest(task=target, params_json=json.dumps({"sum": a + b}), priority=None, from_run_id=context.run.id))
            except Err as e:
                raise Err(TaskError_Failed(f"cannot queue {target}: {e.value}"))

"""{{name}}: a fluid task component in Python (world fluid:scheduler/task).

{{name}}.greet takes typed params (a JSON schema the host checks when a run is queued) and
queues a child run of {{name}}.log with what it made; {{name}}.log logs it.
"""
import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.task_component import Context, TaskDef, TaskError_Failed
from wit_world.imports import host
from wit_world.imports.types import TaskPriority


def _task(name: str, description: str, schema=None) -> TaskDef:
    return TaskDef(name=name, description=description, schedule=None, priority=TaskPriority.MEDIUM, timeout_ms=5_000,
                   max_concurrency=0, retry=None, tags=[], params_schema=json.dumps(schema) if schema else None)


class TaskComponent(exports.TaskComponent):
    def definitions(self):
        schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 100}}, "required": ["name"],
                  "additionalProperties": False}
        return [_task("{{name}}.greet", "Greets someone, then logs it in a child run", schema), _task("{{name}}.log", "Logs a message")]

    def run(self, context: Context) -> None:
        params = json.loads(context.run.params_json)
        if context.run.task == "{{name}}.greet":
            message = json.dumps({"message": f"hello, {params['name']}"})
            try:
                host.queue_run(host.QueueRequest(task="{{name}}.log", params_json=message, priority=None, from_run_id=context.run.id))
            except Err as e:
                raise Err(TaskError_Failed(f"cannot queue the child run: {e.value}"))
        else:
            host.log(host.LogLevel.INFO, params.get("message", ""))

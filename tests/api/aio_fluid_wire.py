"""aio-fluid's wire format against a live fluid host, with aio-fluid's own pydantic models.

Usage: aio_fluid_wire.py BASE_URL TOKEN   (run by tests/tests/api_contract.rs, with the
virtualenv tests/api/setup.sh makes). The host runs the example tasks (`ping`, `add`, ...)
and the bundled db plugin. Every route aio-fluid also has is called as an aio-fluid client
would call it, and each answer is validated with the model aio-fluid's FastAPI app declares
for it (`fluid.scheduler.endpoints`, `fluid.scheduler.db`). Prints one line per check;
exits 1 when any fails.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from types import FunctionType
from typing import Any

from pydantic import BaseModel, TypeAdapter

from fluid.scheduler import TaskManager, TaskRun, task
from fluid.scheduler.broker import TaskManagersStatus
from fluid.scheduler.db import TaskHistoryQuery, TaskRunHistory, TaskRunHistoryPage
from fluid.scheduler.endpoints import TaskUpdate
from fluid.scheduler.models import TaskInfo, TaskPriority, TaskState

BASE, TOKEN = sys.argv[1].rstrip("/"), sys.argv[2]
failures: list[str] = []


def call(method: str, path: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(BASE + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {TOKEN}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def check(what: str, method: str, path: str, status: int, model: Any, body: Any = None, raw: bytes | None = None) -> Any:
    """Calls the route; the answer must have `status` and validate with `model` (a type, or
    a function that validates)."""
    got, answer = call(method, path, body, raw)
    if got != status:
        failures.append(f"{what}: {method} {path} answered {got}, expected {status}: {answer}")
        print(f"FAIL {what}: {got} {answer}")
        return None
    try:
        value = model(answer) if isinstance(model, FunctionType) else TypeAdapter(model).validate_python(answer)
    except Exception as e:  # pydantic's ValidationError, or a model's own
        failures.append(f"{what}: {method} {path}: aio-fluid's model refuses the answer: {e}\n{answer}")
        print(f"FAIL {what}: {e}")
        return None
    print(f"ok   {what}")
    return value


# aio-fluid's tasks of the same names: a TaskRun is validated against its task's params model.
class AddParams(BaseModel):
    a: int
    b: int


@task
async def add(context: TaskRun[AddParams]) -> None:
    pass


@task
async def ping(context: TaskRun) -> None:
    pass


manager = TaskManager()
manager.register_task(add)
manager.register_task(ping)


def aio_task_run(answer: Any) -> TaskRun:
    """aio-fluid's TaskRun, of the task the answer names (a TaskRun holds the Task itself)."""
    t = manager.registry[answer["task"]]
    return TaskRun[t.params_model, Any].model_validate({**answer, "task": t, "task_manager": manager})


class Detail(BaseModel):
    """FastAPI's HTTPException answer."""

    detail: str


# Tasks: GET /tasks (and its tags filter), GET and PATCH /tasks/{name}.
tasks = check("list tasks", "GET", "/tasks", 200, list[TaskInfo]) or []
names = {t.name for t in tasks}
if not {"ping", "add"} <= names:
    failures.append(f"the example tasks are missing from GET /tasks: {names}")
tagged = check("list tasks by tag", "GET", "/tasks?tags=example&tags=other", 200, list[TaskInfo]) or []
if any("example" not in t.tags for t in tagged):
    failures.append("GET /tasks?tags=example answered a task without that tag")
check("one task", "GET", "/tasks/add", 200, TaskInfo)
check("an unknown task", "GET", "/tasks/no-such-task", 404, Detail)
off = check("disable a task", "PATCH", "/tasks/ping", 200, TaskInfo, raw=TaskUpdate(enabled=False).model_dump_json().encode())
if off is not None and off.enabled:
    failures.append("PATCH /tasks/ping {enabled: false} answered enabled")
check("enable it again", "PATCH", "/tasks/ping", 200, TaskInfo, raw=TaskUpdate(enabled=True).model_dump_json().encode())

# Queue runs as aio-fluid's POST /tasks/{name} takes them: the body is the params model,
# and a task without params takes no body at all.
run = check("queue a run with params", "POST", "/tasks/add", 201, aio_task_run, raw=AddParams(a=1, b=2).model_dump_json().encode())
check("queue a run of a task without params, no body", "POST", "/tasks/ping", 201, aio_task_run)
check("params the task refuses", "POST", "/tasks/add", 422, Detail, body={"a": "one"})

# Status and queues.
check("hosts and queues", "GET", "/tasks-status", 200, TaskManagersStatus)
check("clear one queue", "DELETE", "/tasks-queue/low", 200, dict[str, int])
check("clear every queue", "DELETE", "/tasks-queue", 200, dict[str, int])
check("a queue that is no priority", "DELETE", "/tasks-queue/urgent", 422, Detail)

# History (the db plugin) once the run is stored there.
if run is not None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got, _ = call("GET", f"/task-history/{run.id}")
        if got == 200:
            break
        time.sleep(0.1)
    stored = check("one stored run", "GET", f"/task-history/{run.id}", 200, TaskRunHistory)
    page = check("a history page", "GET", "/task-history?limit=5", 200, TaskRunHistoryPage)
    if page is not None and not page.data:
        failures.append("GET /task-history answered no run")
    # The filters as an aio-fluid client sends them (its TaskHistoryQuery, from the query string).
    q = TaskHistoryQuery(task=["add"], state=[TaskState.queued, TaskState.success], priority=[TaskPriority.medium], params={"a": 1}, limit=2)
    query = "&".join(
        [f"task={t}" for t in q.task or []]
        + [f"state={s.value}" for s in q.state or []]
        + [f"priority={p.value}" for p in q.priority or []]
        + [f"params={urllib.parse.quote(json.dumps(q.params))}", f"limit={q.limit}"]
    )
    filtered = check("history filtered", "GET", f"/task-history?{query}", 200, TaskRunHistoryPage)
    if filtered is not None and run.id not in {r.id for r in filtered.data}:
        failures.append(f"the run queued is not in GET /task-history?{query}")
    # aio-fluid takes a time without a time zone (pydantic's datetime); so does fluid, as UTC.
    naive = TaskHistoryQuery(start="2000-01-01T00:00:00", end="2100-01-01T00:00:00.5")
    since = check("history between times without a time zone", "GET",
                  f"/task-history?start={naive.start.isoformat()}&end={naive.end.isoformat()}", 200, TaskRunHistoryPage)
    if since is not None and run.id not in {r.id for r in since.data}:
        failures.append("the run queued is not in the history between 2000 and 2100")
    check("a stored run that does not exist", "GET", "/task-history/0123456789abcdef0123456789abcdef", 404, Detail)

# Runs by id (fluid's own routes; aio-fluid has none): answers in aio-fluid's TaskRun form.
if run is not None:
    check("one run", "GET", f"/task-runs/{run.id}", 200, aio_task_run)

if failures:
    print("\n".join(["", f"{len(failures)} failure(s):", *failures]), file=sys.stderr)
    sys.exit(1)
print("aio-fluid's models accept every answer")

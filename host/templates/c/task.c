// {{name}}: a fluid task component in C. `{{name}}.greet` takes typed params (a JSON
// schema the host checks when a run is queued) and queues a child run of `{{name}}.log`
// with what it made; `{{name}}.log` logs it.
//
// Ownership, as wit-bindgen's C bindings define it: what an exported function is given
// is its own to free; what it returns is freed by the bindings after the call, so it is
// allocated (`task_string_dup`), never a literal; what it passes to an import stays its
// own (`task_string_set` borrows a literal); what an import returns is its own to free.

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "task.h"

// The params `{{name}}.greet` takes; the host refuses a run whose params do not fit.
static const char *GREET_SCHEMA =
    "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":100}},"
    "\"required\":[\"name\"],\"additionalProperties\":false}";

static void define(exports_fluid_scheduler_task_component_task_def_t *d, const char *name, const char *description,
                   const char *schema) {
  memset(d, 0, sizeof *d);
  task_string_dup(&d->name, name);
  task_string_dup(&d->description, description);
  d->priority = FLUID_SCHEDULER_TYPES_TASK_PRIORITY_MEDIUM;
  d->timeout_ms = 5000;
  d->params_schema.is_some = schema != NULL;
  if (schema) {
    task_string_dup(&d->params_schema.val, schema);
  }
}

void exports_fluid_scheduler_task_component_definitions(exports_fluid_scheduler_task_component_list_task_def_t *ret) {
  exports_fluid_scheduler_task_component_task_def_t *defs = malloc(2 * sizeof *defs);
  define(&defs[0], "{{name}}.greet", "Greets someone, then logs it in a child run", GREET_SCHEMA);
  define(&defs[1], "{{name}}.log", "Logs a message", NULL);
  ret->ptr = defs;
  ret->len = 2;
}

static bool is(const task_string_t *s, const char *lit) {
  return s->len == strlen(lit) && memcmp(s->ptr, lit, s->len) == 0;
}

static void fail(exports_fluid_scheduler_task_component_task_error_t *err, const char *why, const task_string_t *detail) {
  char msg[512];
  int n = snprintf(msg, sizeof msg, "%s%.*s", why, detail ? (int)detail->len : 0, detail ? (const char *)detail->ptr : "");
  err->tag = EXPORTS_FLUID_SCHEDULER_TASK_COMPONENT_TASK_ERROR_FAILED;
  task_string_dup_n(&err->val.failed, msg, n < (int)sizeof msg ? (size_t)n : sizeof msg - 1);
}

// The JSON string value of `"key"` in a flat JSON object, quotes and escapes kept, so it
// can be written into other JSON as it is. The host checked the params against the
// schema, so the object is flat and the key holds a string.
static bool json_string(const task_string_t *json, const char *key, const char **start, size_t *len) {
  const char *s = (const char *)json->ptr, *end = s + json->len;
  size_t k = strlen(key);
  for (const char *p = s; p + k + 2 < end; p++) {
    if (*p != '"' || memcmp(p + 1, key, k) != 0 || p[k + 1] != '"') continue;
    const char *q = p + k + 2;
    while (q < end && (*q == ' ' || *q == ':')) q++;
    if (q >= end || *q != '"') return false;
    const char *v = q++;
    while (q < end && *q != '"') q += (*q == '\\') ? 2 : 1;
    if (q >= end) return false;
    *start = v;
    *len = (size_t)(q - v + 1);
    return true;
  }
  return false;
}

bool exports_fluid_scheduler_task_component_run(exports_fluid_scheduler_task_component_context_t *context,
                                                exports_fluid_scheduler_task_component_task_error_t *err) {
  fluid_scheduler_types_task_run_t *run = &context->run;
  bool ok = true;
  if (is(&run->task, "{{name}}.greet")) {
    const char *name;
    size_t len;
    if (!json_string(&run->params_json, "name", &name, &len)) {
      fail(err, "params without a name: ", &run->params_json);
      ok = false;
    } else {
      // The child's params: {"message": "hello, NAME"}, NAME still a JSON string body.
      size_t cap = len + 64;
      char *params = malloc(cap);
      int n = snprintf(params, cap, "{\"message\":\"hello, %.*s}", (int)(len - 1), name + 1);
      fluid_scheduler_host_queue_request_t req = {0};
      task_string_set(&req.task, "{{name}}.log");
      req.params_json = (task_string_t){(uint8_t *)params, (size_t)n};
      req.from_run_id.is_some = true;  // lineage: this run is the child's parent
      req.from_run_id.val = run->id;
      fluid_scheduler_host_task_run_t child;
      fluid_scheduler_host_call_error_t e;
      if (fluid_scheduler_host_queue_run(&req, &child, &e)) {
        fluid_scheduler_host_task_run_free(&child);
      } else {
        fail(err, "cannot queue the child run: ", &e.val.failed);
        fluid_scheduler_host_call_error_free(&e);
        ok = false;
      }
      free(params);
    }
  } else if (is(&run->task, "{{name}}.log")) {
    fluid_scheduler_host_log(FLUID_SCHEDULER_HOST_LOG_LEVEL_INFO, &run->params_json);
  } else {
    fail(err, "unknown task ", &run->task);
    ok = false;
  }
  exports_fluid_scheduler_task_component_context_free(context);
  return ok;
}

// {{name}}: a fluid plugin in C. It counts the runs of each task that succeeded or failed
// (a subscription), keeps them in a table of its own (storage), serves the counts at
// `GET /plugins/{{name}}/routes/counts` (a route), and says whether the db plugin is there
// to read history from (`get-plugin`).
//
// Ownership, as wit-bindgen's C bindings define it: what an exported function is given
// is its own to free; what it returns is freed by the bindings after the call, so it is
// allocated (`plugin_string_dup`), never a literal; what it passes to an import stays its
// own (`plugin_string_set` borrows a literal); what an import returns is its own to free.

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "plugin.h"

#define TABLE "counts"

static const char *STATES[] = {"init", "queued", "running", "success", "failure", "aborted", "rate_limited", "interrupted"};

// A growable text buffer for the JSON answers.
typedef struct {
  char *s;
  size_t len, cap;
} buf_t;

static void put(buf_t *b, const char *fmt, ...) {
  va_list ap;
  for (;;) {
    va_start(ap, fmt);
    int n = vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n >= 0 && b->len + (size_t)n < b->cap) {
      b->len += (size_t)n;
      return;
    }
    b->cap = b->cap * 2 + (size_t)n + 64;
    b->s = realloc(b->s, b->cap);
  }
}

static void storage_error(const fluid_scheduler_storage_storage_error_t *e, plugin_string_t *out) {
  // Every variant carries a message; backend errors and quota are worth a retry.
  const plugin_string_t *m = &e->val.invalid_name;
  buf_t b = {0};
  put(&b, "storage error %d: %.*s", e->tag, (int)m->len, (const char *)m->ptr);
  out->ptr = (uint8_t *)b.s;
  out->len = b.len;
}

static plugin_string_t text(const char *s) {
  plugin_string_t out;
  plugin_string_set(&out, s);
  return out;
}

static bool same(const plugin_string_t *a, const plugin_string_t *b) {
  return a->len == b->len && memcmp(a->ptr, b->ptr, a->len) == 0;
}

static fluid_scheduler_storage_column_t column(const char *name) {
  return (fluid_scheduler_storage_column_t){text(name), FLUID_SCHEDULER_STORAGE_COLUMN_TYPE_TEXT, false};
}

bool exports_fluid_scheduler_task_manager_plugin_register(plugin_string_t *config_json,
                                                          exports_fluid_scheduler_task_manager_plugin_registration_t *ret,
                                                          plugin_string_t *err) {
  plugin_string_free(config_json);
  // One row per run and state: a replayed event changes nothing.
  fluid_scheduler_storage_column_t columns[] = {column("task"), column("state"), column("run_id")};
  plugin_string_t key[] = {text("run_id"), text("state")};
  fluid_scheduler_storage_table_def_t def = {
      .name = text(TABLE),
      .columns = {columns, 3},
      .primary_key = {key, 2},
      .indexes = {NULL, 0},
  };
  fluid_scheduler_storage_storage_error_t e;
  if (!fluid_scheduler_storage_ensure_table(&def, &e)) {
    storage_error(&e, err);
    fluid_scheduler_storage_storage_error_free(&e);
    return false;
  }
  plugin_string_dup(&ret->name, "{{name}}");
  plugin_string_dup(&ret->version, "0.1.0");
  exports_fluid_scheduler_task_manager_plugin_subscription_t *subs = malloc(2 * sizeof *subs);
  subs[0].state = FLUID_SCHEDULER_TYPES_TASK_STATE_SUCCESS;
  subs[1].state = FLUID_SCHEDULER_TYPES_TASK_STATE_FAILURE;
  plugin_string_dup(&subs[0].tag, "{{name}}");
  plugin_string_dup(&subs[1].tag, "{{name}}");
  ret->subscriptions = (exports_fluid_scheduler_task_manager_plugin_list_subscription_t){subs, 2};
  exports_fluid_scheduler_task_manager_plugin_route_t *route = malloc(sizeof *route);
  plugin_string_dup(&route->method, "GET");
  plugin_string_dup(&route->path, "/counts");
  plugin_string_dup(&route->handler, "counts");
  ret->routes = (exports_fluid_scheduler_task_manager_plugin_list_route_t){route, 1};
  return true;
}

bool exports_fluid_scheduler_task_manager_plugin_on_events(exports_fluid_scheduler_task_manager_plugin_list_event_t *events,
                                                           plugin_string_t *err) {
  size_t n = events->len;
  fluid_scheduler_storage_value_t *values = malloc((n ? n : 1) * 3 * sizeof *values);
  fluid_scheduler_storage_row_t *rows = malloc((n ? n : 1) * sizeof *rows);
  for (size_t i = 0; i < n; i++) {
    fluid_scheduler_types_task_run_t *run = &events->ptr[i].run;
    fluid_scheduler_storage_value_t *v = &values[3 * i];
    v[0].tag = v[1].tag = v[2].tag = FLUID_SCHEDULER_STORAGE_VALUE_TEXT;
    v[0].val.text = run->task;
    v[1].val.text = text(STATES[run->state]);
    v[2].val.text = run->id;
    rows[i] = (fluid_scheduler_storage_row_t){v, 3};
  }
  plugin_string_t columns[] = {text("task"), text("state"), text("run_id")};
  plugin_list_string_t cols = {columns, 3};
  fluid_scheduler_storage_list_row_t list = {rows, n};
  plugin_string_t table = text(TABLE);
  uint64_t written;
  fluid_scheduler_storage_storage_error_t e;
  bool ok = fluid_scheduler_storage_upsert(&table, &cols, &list, &written, &e);
  if (!ok) {
    storage_error(&e, err);
    fluid_scheduler_storage_storage_error_free(&e);
  }
  free(rows);
  free(values);
  exports_fluid_scheduler_task_manager_plugin_list_event_free(events);
  return ok;
}

// `{"counts": {task: {state: n}}, "history": bool}` from every stored row.
static bool counts(plugin_string_t *ret, exports_fluid_scheduler_task_manager_plugin_call_error_t *err) {
  plugin_string_t wanted[] = {text("task"), text("state")};
  plugin_string_t order_cols[] = {text("task"), text("state")};
  fluid_scheduler_storage_order_by_t order[] = {{order_cols[0], false}, {order_cols[1], false}};
  fluid_scheduler_storage_query_t q = {
      .columns = {wanted, 2},
      .filters = {NULL, 0},
      .order = {order, 2},
      .after = {.is_some = false},
      .limit = {.is_some = false},
  };
  plugin_string_t table = text(TABLE);
  fluid_scheduler_storage_list_row_t rows;
  fluid_scheduler_storage_storage_error_t e;
  if (!fluid_scheduler_storage_select(&table, &q, &rows, &e)) {
    err->tag = FLUID_SCHEDULER_TYPES_CALL_ERROR_FAILED;
    storage_error(&e, &err->val.failed);
    fluid_scheduler_storage_storage_error_free(&e);
    return false;
  }
  // Rows come ordered by task then state: count the rows of each pair.
  buf_t b = {0};
  put(&b, "{\"counts\":{");
  for (size_t i = 0; i < rows.len;) {
    plugin_string_t *task = &rows.ptr[i].ptr[0].val.text;
    put(&b, "%s\"%.*s\":{", i ? "," : "", (int)task->len, (const char *)task->ptr);
    for (size_t first = i; i < rows.len && same(&rows.ptr[i].ptr[0].val.text, task);) {
      plugin_string_t *state = &rows.ptr[i].ptr[1].val.text;
      size_t n = 0;
      for (; i < rows.len && same(&rows.ptr[i].ptr[0].val.text, task) && same(&rows.ptr[i].ptr[1].val.text, state); i++) {
        n++;
      }
      put(&b, "%s\"%.*s\":%zu", i - n == first ? "" : ",", (int)state->len, (const char *)state->ptr, n);
    }
    put(&b, "}");
  }
  // `get-plugin`: another plugin, by name, as tasks reach the db plugin.
  plugin_string_t db = text("db");
  fluid_scheduler_host_own_plugin_t handle;
  bool history = fluid_scheduler_host_get_plugin(&db, &handle);
  if (history) {
    fluid_scheduler_host_plugin_drop_own(handle);
  }
  put(&b, "},\"history\":%s}", history ? "true" : "false");
  fluid_scheduler_storage_list_row_free(&rows);
  ret->ptr = (uint8_t *)b.s;
  ret->len = b.len;
  return true;
}

bool exports_fluid_scheduler_task_manager_plugin_call(plugin_string_t *method, plugin_string_t *args_json, plugin_string_t *ret,
                                                      exports_fluid_scheduler_task_manager_plugin_call_error_t *err) {
  bool ok;
  if (method->len == 6 && memcmp(method->ptr, "counts", 6) == 0) {
    ok = counts(ret, err);
  } else {
    err->tag = FLUID_SCHEDULER_TYPES_CALL_ERROR_UNKNOWN_METHOD;
    plugin_string_dup_n(&err->val.unknown_method, (const char *)method->ptr, method->len);
    ok = false;
  }
  plugin_string_free(method);
  plugin_string_free(args_json);
  return ok;
}

"""schemathesis hooks (SCHEMATHESIS_HOOKS=hooks, from tests/api): the strategies of the
string formats fluid's /openapi.json names that schemathesis does not know.

`fluid-cursor` is the db plugin's history cursor (`GET /task-history?cursor=`): empty for the
first page, else base64url (no padding) of the JSON `{"q": <the query it continues>,
"queued": <microseconds>, "id": <run id>}`. A random string is not a cursor, and the plugin
answers 422 for one, as it should; the fuzzer is taught what a valid one looks like.
"""

import base64
import json

import schemathesis
from hypothesis import strategies as st


def _encode(position: tuple[int, str]) -> str:
    queued, run_id = position
    text = json.dumps({"q": {}, "queued": queued, "id": run_id}, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


schemathesis.openapi.format(
    "fluid-cursor",
    st.just("")
    | st.tuples(st.integers(min_value=0, max_value=2**62), st.from_regex(r"\A[0-9a-f]{32}\Z")).map(_encode),
)

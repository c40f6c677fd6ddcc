"""A batch of HTTP API calls to one dhtkit daemon; runs inside the daemon's namespace.

The API of a daemon in a namespace listens on that namespace's loopback,
which the test process cannot reach; this script (standard library only,
so that it starts fast) takes one JSON object as its argument and prints
one JSON list, the result of each call in order::

    {"data_dir": DIR, "within": SECONDS, "workers": N,
     "calls": [["status"], ["contacts"], ["put", NAME, VALUE], ["get", NAME, VALUE], ...]}

``put`` succeeds on 200; ``get`` on 200 with the expected value; ``status``
and ``contacts`` on 200. Each
call is tried again for up to ``within`` seconds (0: exactly once), so
that a test can give an overlay a bounded time to repair itself.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

#: Seconds one HTTP exchange may take (a lookup that meets dead nodes waits for their RPCs).
EXCHANGE_TIMEOUT = 30.0


def _api(data_dir: Path) -> tuple[str, dict[str, str]]:
    url = (data_dir / "api.url").read_text().strip()
    headers = {}
    token = data_dir / "api.token"
    if token.exists():
        headers["Authorization"] = "Bearer " + token.read_text().strip()
    return url, headers


def _once(data_dir: Path, call: list[str]) -> dict[str, Any]:
    url, headers = _api(data_dir)
    what = call[0]
    if what in ("status", "contacts"):
        request = urllib.request.Request(url + "/v1/" + what, headers=headers)
    else:
        path = "{}/v1/values/{}".format(url, urllib.parse.quote(call[1], safe=""))
        if what == "put":
            body = call[2].encode("utf-8")
            request = urllib.request.Request(path, data=body, method="PUT", headers=headers)
        else:
            request = urllib.request.Request(path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=EXCHANGE_TIMEOUT) as reply:
            status, text = reply.status, reply.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode("utf-8", "replace")
    ok = status == 200 and (what != "get" or text == call[2])
    return {"ok": ok, "status": status, "body": text if what == "contacts" else text[:500]}


def _call(data_dir: Path, call: list[str], within: float) -> dict[str, Any]:
    deadline = time.monotonic() + within
    tries = 0
    while True:
        tries += 1
        try:
            result = _once(data_dir, call)
        except (OSError, ValueError) as e:  # no api.url yet, refused, timed out
            result = {"ok": False, "status": None, "body": repr(e)}
        result["tries"] = tries
        if result["ok"] or time.monotonic() >= deadline:
            result["call"] = call
            return result
        time.sleep(0.25)


def main() -> None:
    job = json.loads(sys.argv[1])
    data_dir = Path(job["data_dir"])
    within = float(job.get("within", 0))
    with ThreadPoolExecutor(int(job.get("workers", 4))) as pool:
        results = list(pool.map(lambda call: _call(data_dir, call, within), job["calls"]))
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()

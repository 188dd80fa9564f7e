"""Demo data loader for docker-compose (profile `demo`): plays sample feedback through the
running services and closes the loop once.

1. posts feedback-<source>.json beside this file to ingest's batch endpoint, with that
   source's API key (a surge of late-delivery complaints among other feedback);
2. waits until trends raises the action on late deliveries (DEMO_THEME);
3. resolves it with a "we did" message through the ops API (unless DEMO_RESOLVE=false);
4. waits until notify has told the customers, and prints each delivery's status.

Standard library only, so it runs in a plain python image:
    docker compose --profile demo up demo-loader
    python3 deploy/demo/load.py   # against `closeloop up`, with the environment below set
"""

import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

INGEST_URL = os.environ.get("INGEST_URL", "http://127.0.0.1:8080").rstrip("/")
TRENDS_URL = os.environ.get("TRENDS_URL", "http://127.0.0.1:8082").rstrip("/")
NOTIFY_URL = os.environ.get("NOTIFY_URL", "http://127.0.0.1:8083").rstrip("/")
# source=key,...: the same format as INGEST_API_KEYS.
API_KEYS = os.environ.get("DEMO_API_KEYS", "shopdesk=dev-key-shopdesk,surveyhub=dev-key-surveyhub")
OPS_TOKEN = os.environ.get("TRENDS_OPS_TOKEN", "")
# notify's API wants the same ops token as trends' unless given its own.
NOTIFY_OPS_TOKEN = os.environ.get("NOTIFY_OPS_TOKEN", OPS_TOKEN)
RESOLVE = os.environ.get("DEMO_RESOLVE", "true").lower() not in ("false", "0", "no")
WAIT_SECONDS = float(os.environ.get("DEMO_WAIT_SECONDS", "120"))
# The sample feedback is a surge of late-delivery complaints; that action is the one resolved.
THEME = os.environ.get("DEMO_THEME", "delivery_time")
DATA_DIR = Path(os.environ.get("DEMO_DATA_DIR", Path(__file__).resolve().parent))


class DemoError(Exception):
    pass


def request(method, url, body=None, token=None):
    """One JSON request; returns (status, parsed body or text)."""
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=15) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    except (urllib.error.URLError, OSError) as error:
        raise DemoError(f"{method} {url}: {error}") from error
    try:
        return status, json.loads(raw) if raw else None
    except json.JSONDecodeError:
        return status, raw.decode(errors="replace")


def parse_keys(spec):
    keys = {}
    for pair in filter(None, (p.strip() for p in spec.split(","))):
        source, sep, key = pair.partition("=")
        if not sep or not source or not key:
            raise DemoError(f"DEMO_API_KEYS: expected source=key, got {pair!r}")
        keys[source] = key
    return keys


def post_feedback(keys):
    files = sorted(DATA_DIR.glob("feedback-*.json"))
    if not files:
        raise DemoError(f"no feedback-<source>.json in {DATA_DIR}")
    total = 0
    for path in files:
        source = path.stem.removeprefix("feedback-")
        if source not in keys:
            raise DemoError(f"{path.name}: no API key for source {source!r} in DEMO_API_KEYS")
        try:
            batch = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise DemoError(f"{path}: {error}") from error
        status, answer = request("POST", f"{INGEST_URL}/v1/feedback/batch", batch, keys[source])
        if status != 202:
            raise DemoError(f"ingest answered {status} for {path.name}: {answer}")
        accepted = len(answer.get("event_ids", [])) if isinstance(answer, dict) else 0
        print(f"posted {accepted} feedback events as {source}")
        total += accepted
    return total


def wait_for(what, probe):
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise DemoError(f"gave up after {WAIT_SECONDS:.0f} s waiting for {what}")
        time.sleep(2)


def open_action():
    url = f"{TRENDS_URL}/v1/actions?status=open&theme={urllib.parse.quote(THEME)}"
    status, actions = request("GET", url, token=OPS_TOKEN)
    if status != 200:
        raise DemoError(f"trends answered {status} listing actions: {actions}")
    return actions[0] if actions else None


def resolve(action):
    body = {
        "resolved_by": "demo@closeloop.example",
        "message": {
            "en": "We added a second carrier for next-day delivery.",
            "de": "Wir haben einen zweiten Paketdienst für die Lieferung am nächsten Tag hinzugefügt.",
        },
    }
    url = f"{TRENDS_URL}/v1/actions/{action['action_id']}/resolve"
    status, answer = request("POST", url, body, OPS_TOKEN)
    if status not in (200, 202):
        raise DemoError(f"trends answered {status} resolving {action['action_id']}: {answer}")


def settled_notifications(action_id):
    """The action's deliveries once none is pending any more, else None."""
    url = f"{NOTIFY_URL}/v1/notifications?action={action_id}"
    status, answer = request("GET", url, token=NOTIFY_OPS_TOKEN)
    if status != 200 or not isinstance(answer, dict):
        raise DemoError(f"notify answered {status}: {answer}")
    deliveries = answer.get("deliveries", [])
    if deliveries and all(item.get("status") != "pending" for item in deliveries):
        return deliveries
    return None


def main():
    keys = parse_keys(API_KEYS)
    posted = post_feedback(keys)
    print(f"{posted} events accepted; waiting for trends to raise an action …")
    action = wait_for(f"an open {THEME} action", open_action)
    evidence = action.get("evidence", {})
    print(f"action raised: {action['theme']} ({action['action_id']}), evidence: {json.dumps(evidence)[:300]}")
    if not RESOLVE:
        print("DEMO_RESOLVE=false: leaving the action open")
        return
    resolve(action)
    print("resolved with a \"we did\" message; waiting for notify …")
    told = wait_for("notify to deliver", lambda: settled_notifications(action["action_id"]))
    for item in told:
        print(f"  {item['customer_id']} ({item['language']}): {item['status']} after {item['attempts']} attempt(s)")
    delivered = sum(item["status"] == "delivered" for item in told)
    print(f"{delivered} of {len(told)} customers told; the loop is closed")


if __name__ == "__main__":
    try:
        main()
    except DemoError as error:
        print(f"demo-loader: {error}", file=sys.stderr)
        sys.exit(1)

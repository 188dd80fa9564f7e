"""A webhook receiver for the compose demo: verifies each "you said, we did" delivery's
Standard Webhooks signature with the source's secret, logs it and answers 204 (401 when
the signature does not match, so notify's retries show on the dashboard).

    WEBHOOK_SECRETS=shopdesk=whsec_...,surveyhub=whsec_... python3 webhook_sink.py
Deliveries arrive at POST /webhooks/<source>.
"""

import base64
import hashlib
import hmac
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(os.environ.get("WEBHOOK_SINK_PORT", "9000"))


def parse_secrets(spec):
    secrets = {}
    for pair in filter(None, (p.strip() for p in spec.split(","))):
        source, sep, secret = pair.partition("=")
        if not sep or not source or not secret:
            sys.exit(f"WEBHOOK_SECRETS: expected source=secret, got {pair!r}")
        # Like notify: a whsec_ secret's key is its base64 part, any other secret is raw bytes.
        try:
            secrets[source] = (
                base64.b64decode(secret.removeprefix("whsec_"), validate=True)
                if secret.startswith("whsec_")
                else secret.encode()
            )
        except ValueError:
            sys.exit(f"WEBHOOK_SECRETS: the secret of {source!r} is not whsec_<base64>")
    return secrets


SECRETS = parse_secrets(os.environ.get("WEBHOOK_SECRETS", ""))


def signature_ok(key, headers, body):
    msg_id, timestamp = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
    expected = base64.b64encode(
        hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    ).decode()
    presented = headers.get("webhook-signature", "").split()
    return any(hmac.compare_digest(f"v1,{expected}", sig) for sig in presented)


class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        source = self.path.removeprefix("/webhooks/").strip("/")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        key = SECRETS.get(source)
        if key is None or not signature_ok(key, self.headers, body):
            print(f"REJECTED {self.path}: unknown source or bad signature", flush=True)
            self.send_response(401)
            self.end_headers()
            return
        try:
            text = json.loads(body).get("text", "")
        except (json.JSONDecodeError, AttributeError):
            text = body[:200].decode(errors="replace")
        print(f"{source} ← {self.headers.get('webhook-id')}: {text}", flush=True)
        self.send_response(204)
        self.end_headers()

    def do_GET(self):  # health check
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args):  # one line per delivery is printed above instead
        pass


if __name__ == "__main__":
    print(f"webhook sink on :{PORT} for {', '.join(SECRETS) or 'no sources'}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", PORT), Sink).serve_forever()

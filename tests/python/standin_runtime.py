#!/usr/bin/env python3
"""A stand-in agent runtime for tenant-agent's tests (standard library only).

tenant-agent starts it the way it starts OpenClaw (a `command` runtime) and health-checks it on
GET /healthz. It talks to tenant-agent's local safety API over the unix socket named by
TENANT_AGENT_SOCKET exactly as the OpenClaw plugin does before every tool call: POST
/v1/actions, and while the answer is `pending`, GET /v1/actions/ID?wait=N until it is decided.

Tests drive it over HTTP on 127.0.0.1:PORT:
  POST /act    {"command"|"tool"+"args", "cwd", "agent", "deadline"} -> the gate's final answer
  POST /print  {"text"}   prints the text on stdout (tenant-agent logs it, redacted)
  POST /crash  {"code"}   exits with that code
  POST /sick              /healthz answers 503 from now on
  POST /spawn-child       starts `sleep 1000` in its process group; returns its pid
  GET  /whoami            {"pid", "uid", "proxy", "socket"}
"""
import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=90):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def api(method, path, body=None):
    conn = UnixHTTPConnection(os.environ["TENANT_AGENT_SOCKET"])
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=data, headers={"content-type": "application/json"})
    resp = conn.getresponse()
    payload = resp.read()
    conn.close()
    return resp.status, json.loads(payload or b"null")


def ask(request):
    """What the plugin does: ask, then wait for the owner while the answer is pending."""
    deadline = time.monotonic() + float(request.pop("deadline", 30))
    status, answer = api("POST", "/v1/actions", request)
    while status == 200 and answer.get("status") in ("pending", "running"):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        status, answer = api("GET", f"/v1/actions/{answer['id']}?wait={max(1, min(25, int(left)))}")
    return {"http_status": status, **(answer if isinstance(answer, dict) else {"answer": answer})}


STATE = {"sick": False}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("content-length") or 0)
        return json.loads(self.rfile.read(n) or b"{}")

    def do_GET(self):
        if self.path == "/healthz":
            if STATE["sick"]:
                self.reply(503, {"ok": False})
            else:
                self.reply(200, {"ok": True, "status": "live"})
        elif self.path == "/whoami":
            self.reply(200, {"pid": os.getpid(), "uid": os.getuid(),
                             "proxy": os.environ.get("TENANT_AGENT_PROXY"),
                             "socket": os.environ.get("TENANT_AGENT_SOCKET")})
        else:
            self.reply(404, {})

    def do_POST(self):
        if self.path == "/act":
            self.reply(200, ask(self.body()))
        elif self.path == "/print":
            print(self.body()["text"], flush=True)
            self.reply(200, {})
        elif self.path == "/crash":
            code = int(self.body().get("code", 3))
            self.reply(200, {})
            threading.Timer(0.1, lambda: os._exit(code)).start()
        elif self.path == "/sick":
            STATE["sick"] = True
            self.reply(200, {})
        elif self.path == "/spawn-child":
            child = subprocess.Popen(["sleep", "1000"])
            self.reply(200, {"pid": child.pid})
        else:
            self.reply(404, {})


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ignore-term", action="store_true")
    args = p.parse_args()
    if args.ignore_term:
        signal.signal(signal.SIGTERM, lambda *_: print("ignoring SIGTERM", flush=True))
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"stand-in runtime pid {os.getpid()} serving on 127.0.0.1:{args.port}", flush=True)
    print("stand-in runtime warning: this line goes to stderr", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

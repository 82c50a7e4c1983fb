// tenant-gate: the OpenClaw plugin that puts every tool call through tenant-agent's gate.
//
// Shipped inside the tenant-agent binary and written by the daemon into a directory the
// runtime's user cannot write; loaded through the gateway config the daemon writes (also out of
// the runtime's reach). It holds no secret and decides nothing itself: tenant-agent's local
// safety API (a unix socket) classifies each call, and this plugin only carries the verdict.
//
// - before_tool_call: POST /v1/actions {agent, tool, args, cwd, reason} (never a bare `command`, so
//   nothing runs twice). `allowed` lets the call proceed; `blocked` returns the daemon's reason
//   to the model; `pending` waits for the owner while the hold budget lasts, then hands the
//   action over to the daemon, which runs it once on approval and tells the agent in this
//   session. An `exec` whose command uses SECRET_REF(name) is not run by OpenClaw at all: the
//   daemon runs exactly that command with the value injected and returns the redacted output.
//   Any error, timeout, refused connection or unexpected answer blocks (fail closed).
// - before_message_write and tool_result_persist: every message is redacted by the daemon
//   before OpenClaw stores it (transcripts never hold a vault value). These hooks are
//   synchronous, so the request runs on a worker thread while this thread waits.

import fs from "node:fs";
import http from "node:http";
import { Worker } from "node:worker_threads";

const PLUGIN_ID = "tenant-gate";
const SECRET_REF = "SECRET_REF(";

function settings(api) {
  const c = api.pluginConfig ?? {};
  return {
    socketPath: c.socketPath ?? process.env.TENANT_AGENT_SOCKET,
    // How long one tool call waits for the owner before it is handed over. OpenClaw aborts a
    // run that makes no progress for 360 s, so this stays well below that.
    holdMs: Number.isFinite(c.holdMs) ? c.holdMs : 300000,
    // Longest single long-poll (the daemon caps it at 60 s).
    pollSecs: Number.isFinite(c.pollSecs) ? c.pollSecs : 25,
    workspace: c.workspace ?? process.cwd(),
    requestTimeoutMs: Number.isFinite(c.requestTimeoutMs) ? c.requestTimeoutMs : 90000,
    // A file that gets one line per judged tool call with the time the hook took (for
    // benchmarks); unset: nothing is written.
    latencyLog: typeof c.latencyLog === "string" ? c.latencyLog : undefined,
  };
}

function call(cfg, method, path, body) {
  return new Promise((resolve, reject) => {
    if (!cfg.socketPath) {
      reject(new Error("no socketPath configured"));
      return;
    }
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(
      {
        socketPath: cfg.socketPath,
        method,
        path,
        headers: data
          ? { "content-type": "application/json", "content-length": Buffer.byteLength(data) }
          : {},
        timeout: cfg.requestTimeoutMs,
      },
      (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let json;
          try {
            json = JSON.parse(text);
          } catch {
            reject(new Error(`tenant-agent answered ${res.statusCode} with no JSON`));
            return;
          }
          if (res.statusCode !== 200) {
            reject(new Error(json?.error ?? `tenant-agent answered ${res.statusCode}`));
            return;
          }
          resolve(json);
        });
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error("tenant-agent did not answer in time")));
    req.on("error", reject);
    if (data) req.write(data);
    req.end();
  });
}

const block = (reason) => ({ block: true, blockReason: reason });

function outcomeText(r) {
  const o = r.outcome ?? {};
  if (o.error) return `It could not run: ${o.error}`;
  const exit = o.exit?.kind === "code" ? `exit code ${o.exit.value}` : o.exit?.kind ?? "ended";
  const parts = [`Result (${exit}).`];
  if (o.stdout) parts.push(`stdout:\n${o.stdout}`);
  if (o.stderr) parts.push(`stderr:\n${o.stderr}`);
  if (!o.stdout && !o.stderr) parts.push("(no output)");
  return parts.join("\n");
}

/** The tool result the model sees for an answer that is final. */
function settle(r, label) {
  switch (r.status) {
    case "allowed":
      return undefined;
    case "ran":
    case "failed":
      // The daemon ran the command itself (it used a secret, or it was approved after a
      // hand-over): the model gets the redacted result, OpenClaw runs nothing.
      return block(`tenant-agent ran this command for you${label}. ${outcomeText(r)}`);
    case "blocked":
    case "denied":
    case "expired":
      return block(r.message ?? `Not allowed (${r.status}).`);
    default:
      return block(`Not allowed: tenant-agent answered ${JSON.stringify(r.status)}.`);
  }
}

async function beforeToolCall(cfg, event, ctx) {
  const tool = event.toolName;
  const params = event.params ?? {};
  const agent = ctx.agentId ?? "main";
  const cwd =
    typeof params.workdir === "string" && params.workdir.startsWith("/")
      ? params.workdir
      : cfg.workspace;
  // OpenClaw's tools take a `title`: "short purpose" in the model's words. The owner sees it
  // labelled as the agent's own words (redacted by the daemon first).
  const reason = typeof params.title === "string" && params.title.trim() ? params.title : undefined;
  let body = { agent, tool, args: params, cwd, reason };
  const usesSecret = JSON.stringify(params).includes(SECRET_REF);
  if (usesSecret) {
    if (tool !== "exec" || typeof params.command !== "string") {
      return block(
        "SECRET_REF(name) can only be used in an exec command: tenant-agent runs such commands itself with the value injected.",
      );
    }
    // Only the daemon ever holds the value: it runs exactly this command.
    body = { agent, command: params.command, cwd, reason };
  }
  let r = await call(cfg, "POST", "/v1/actions", body);
  if (r.status !== "pending" && r.status !== "running") {
    return settle(r, usesSecret ? " with your secrets injected" : "");
  }
  const id = r.id;
  const deadline = Date.now() + cfg.holdMs;
  while (r.status === "pending" || r.status === "running") {
    const left = Math.floor((deadline - Date.now()) / 1000);
    if (left <= 0) break;
    r = await call(cfg, "GET", `/v1/actions/${id}?wait=${Math.min(cfg.pollSecs, left)}`);
  }
  if (r.status === "pending" || r.status === "running") {
    // Past the budget: the daemon takes it over and reports back in this session.
    await call(cfg, "POST", `/v1/actions/${id}/handover`, {
      agent,
      session: ctx.sessionKey ?? null,
    });
    return block(
      `Held for the owner as ${id}. The owner has not decided yet. Do not retry this call: ` +
        `when the owner approves, tenant-agent runs exactly this action once and tells you the ` +
        `result in this conversation; a denial comes the same way.`,
    );
  }
  return settle(r, " after the owner approved it");
}

// --- synchronous redaction through a worker thread ---------------------------------------

const WORKER = `
const { parentPort } = require("node:worker_threads");
const http = require("node:http");
parentPort.on("message", ({ socketPath, body, sab }) => {
  const head = new Int32Array(sab, 0, 2);
  const out = new Uint8Array(sab, 8);
  const finish = (state, bytes) => {
    if (bytes.length > out.length) {
      head[1] = bytes.length;
      Atomics.store(head, 0, 3);
    } else {
      out.set(bytes);
      head[1] = bytes.length;
      Atomics.store(head, 0, state);
    }
    Atomics.notify(head, 0);
  };
  const req = http.request({ socketPath, method: "POST", path: "/v1/redact",
      headers: { "content-type": "application/json" }, timeout: 10000 }, (res) => {
    const chunks = [];
    res.on("data", (c) => chunks.push(c));
    res.on("end", () => finish(res.statusCode === 200 ? 1 : 2, Buffer.concat(chunks)));
    res.on("error", () => finish(2, Buffer.alloc(0)));
  });
  req.on("timeout", () => req.destroy(new Error("timeout")));
  req.on("error", () => finish(2, Buffer.alloc(0)));
  req.end(body);
});
`;

let worker;
function redactSync(cfg, value) {
  if (!worker) {
    worker = new Worker(WORKER, { eval: true });
    worker.unref();
  }
  const body = JSON.stringify(value);
  let size = Math.max(65536, Buffer.byteLength(body) * 2 + 4096);
  for (let attempt = 0; attempt < 2; attempt++) {
    const sab = new SharedArrayBuffer(8 + size);
    const head = new Int32Array(sab, 0, 2);
    worker.postMessage({ socketPath: cfg.socketPath, body, sab });
    const waited = Atomics.wait(head, 0, 0, 15000);
    const state = Atomics.load(head, 0);
    if (waited === "timed-out" || state === 2) return undefined;
    if (state === 3) {
      size = head[1] + 16;
      continue;
    }
    const text = Buffer.from(new Uint8Array(sab, 8, head[1])).toString("utf8");
    try {
      return JSON.parse(text);
    } catch {
      return undefined;
    }
  }
  return undefined;
}

const WITHHELD = "[tenant-agent: redaction unavailable; content withheld]";

function withheld(message) {
  return { ...message, content: [{ type: "text", text: WITHHELD }] };
}

export default {
  id: PLUGIN_ID,
  name: "tenant-agent gate",
  description:
    "Every tool call goes through tenant-agent's safety gate; transcripts are redacted before they are stored.",
  register(api) {
    const cfg = settings(api);
    api.on(
      "before_tool_call",
      async (event, ctx) => {
        const started = process.hrtime.bigint();
        try {
          return await beforeToolCall(cfg, event, ctx ?? {});
        } catch (e) {
          return block(
            `Blocked: the safety gate could not be asked (${e?.message ?? e}). Nothing ran.`,
          );
        } finally {
          const ms = Number(process.hrtime.bigint() - started) / 1e6;
          if (cfg.latencyLog) {
            try {
              fs.appendFileSync(cfg.latencyLog, `${event?.toolName}\t${ms.toFixed(3)}\n`);
            } catch {
              // Measuring is best effort; the verdict above stands.
            }
          }
        }
      },
      { priority: 1000 },
    );
    api.on("before_message_write", (event) => {
      const redacted = redactSync(cfg, event.message);
      if (redacted === undefined) return { message: withheld(event.message) };
      return { message: redacted };
    });
    api.on("tool_result_persist", (event) => {
      const redacted = redactSync(cfg, event.message);
      if (redacted === undefined) return { message: withheld(event.message) };
      return { message: redacted };
    });
  },
};

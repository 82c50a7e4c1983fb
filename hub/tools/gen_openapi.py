#!/usr/bin/env python3
"""Writes hub/openapi.json. Edit this file, run it, commit both; a test checks that every
route the router serves is documented and every documented route exists."""
import json, pathlib

def ref(name): return {"$ref": f"#/components/schemas/{name}"}
def js(schema): return {"application/json": {"schema": schema}}
def ok(desc, schema=None):
    r = {"description": desc}
    if schema: r["content"] = js(schema)
    return r
ERR = lambda d: {"description": d, "content": js(ref("Error"))}
COMMON = {"400": ERR("Malformed JSON or invalid fields"), "413": ERR("Body over 256 KiB"),
          "415": ERR("Content-Type is not application/json")}
SESSION = [{"session": []}]
SESSION_CSRF = [{"session": [], "csrf": []}]
TENANT = [{"tenantSignature": []}]

def op(summary, security=None, body=None, responses=None, params=None, desc=None):
    o = {"summary": summary, "responses": responses or {}}
    if desc: o["description"] = desc
    if security is not None: o["security"] = security
    if body: o["requestBody"] = {"required": True, "content": js(body)}
    if params: o["parameters"] = params
    return o

ORDER_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{8,64}$"}}
auth401 = {"401": ERR("Not logged in, or the session ended")}
tenant401 = {"401": ERR("Missing, forged, skewed (over 300 s) or replayed signature; unknown tenant")}

S = lambda props, req=None, **kw: {"type": "object", "properties": props, **({"required": req} if req else {}), **kw}
str_ = {"type": "string"}; int_ = {"type": "integer"}

paths = {
 "/healthz": {"get": op("Liveness and database check", [], responses={
     "200": ok("Serving", ref("Health")), "503": ok("The database is unavailable", ref("Health"))})},
 "/metrics": {"get": op("Prometheus text metrics", [], responses={"200": {"description": "Prometheus text format 0.0.4", "content": {"text/plain": {"schema": {"type": "string"}}}}})},
 "/openapi.json": {"get": op("This document", [], responses={"200": ok("The OpenAPI document", {"type": "object"})})},
 "/v1/signup": {"post": op("Create a customer account and log in", [], ref("Credentials"), {
     "201": {"description": "Created; sets the session cookie", "content": js(ref("SessionInfo")), "headers": {"Set-Cookie": {"schema": {"type": "string"}, "description": "hub_session; HttpOnly; SameSite=Strict; Secure"}}},
     "409": ERR("An account with this email exists (account_exists)"), "429": ERR("Too many sign-ups from this address"), **COMMON})},
 "/v1/login": {"post": op("Log in", [], ref("Credentials"), {
     "200": {"description": "Logged in; sets the session cookie", "content": js(ref("SessionInfo"))},
     "401": ERR("Wrong email or password (bad_credentials)"),
     "429": {"description": "Five failed log-ins for this email from this address (or twenty from this address) in 15 minutes; Retry-After says when to try again. Failures from other addresses only slow log-ins for the email down (up to 2 s), never refuse them", "content": js(ref("Error"))}, **COMMON})},
 "/v1/logout": {"post": op("End the session", SESSION_CSRF, responses={"204": ok("Logged out; the cookie is cleared"), **auth401, "403": ERR("Missing or wrong x-csrf-token")})},
 "/v1/session": {"get": op("Who is logged in, and the CSRF token for state-changing requests", SESSION, responses={"200": ok("The session", ref("SessionInfo")), **auth401})},
 "/v1/tenants": {"get": op("The tenants this account may see (its own; all for admins), with health", SESSION, responses={"200": ok("Tenants", {"type": "object", "properties": {"tenants": {"type": "array", "items": ref("TenantView")}}}), **auth401})},
 "/v1/approvals": {"get": op("Approval requests of this account's tenants, newest first", SESSION, params=[
     {"name": "status", "in": "query", "schema": {"enum": ["pending", "decided", "all"], "default": "pending"}},
     {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}}],
     responses={"200": ok("Approvals", {"type": "object", "properties": {"approvals": {"type": "array", "items": ref("Approval")}}}), "400": ERR("Bad query"), **auth401})},
 "/v1/approvals/{id}": {"get": op("One approval request", SESSION, params=[ID], responses={"200": ok("The approval", ref("Approval")), **auth401, "404": ERR("No such approval, or not this account's")})},
 "/v1/approvals/{id}/decision": {"post": op("Approve or deny; the hub signs a grant and the tenant learns of it within a second", SESSION_CSRF, ref("DecisionInput"), params=[ID], responses={
     "200": ok("Decided", {"type": "object", "properties": {"grant": ref("SignedGrant")}}), **auth401,
     "403": ERR("Missing or wrong x-csrf-token"), "404": ERR("No such approval, or not this account's"),
     "409": ERR("Already decided (already_decided)"), "410": ERR("Expired unanswered (expired)"), **COMMON})},
 "/v1/push/key": {"get": op("The hub's VAPID public key (applicationServerKey for PushManager.subscribe)", [], responses={"200": ok("The key", S({"public_key": {"type": "string", "description": "Uncompressed P-256 point, base64url"}}))})},
 "/v1/push/subscriptions": {"post": op("Register this device's push subscription (PushSubscription.toJSON())", SESSION_CSRF, ref("PushSubscription"), {
     "201": ok("Stored", S({"device": int_})), **auth401, "403": ERR("Missing or wrong x-csrf-token"),
     "400": ERR("Not an https push endpoint (bad_endpoint) or keys that are not a P-256 point and a 16-byte secret (bad_keys)"), "413": ERR("Body over 256 KiB")})},
 "/v1/push/unsubscribe": {"post": op("Remove one of this account's push subscriptions", SESSION_CSRF, S({"endpoint": str_}, ["endpoint"]), {
     "204": ok("Removed"), **auth401, "403": ERR("Missing or wrong x-csrf-token"), "404": ERR("No such subscription of this account")})},
 "/v1/devices": {"get": op("Push devices with delivery health (own; all for admins)", SESSION, responses={"200": ok("Devices", S({"devices": {"type": "array", "items": ref("Device")}})), **auth401})},
 "/v1/admin/jobs": {"get": op("Background jobs, newest first (admins only): pushes, reminders, expiry and sweeps, with attempts, last error and the replica holding each", SESSION, params=[
     {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 100}}],
     responses={"200": ok("Jobs", S({"jobs": {"type": "array", "items": S({
         "id": int_, "kind": str_, "key": str_, "run_at": int_, "attempts": int_,
         "last_error": {"type": ["string", "null"]}, "lease_owner": {"type": ["string", "null"]},
         "lease_until": {"type": ["integer", "null"]}, "done_at": {"type": ["integer", "null"]}})}})),
         **auth401, "403": ERR("Not an admin account"), "400": ERR("Bad query")})},
 "/v1/admin/orders": {
     "get": op("Orders, newest first (admins only)", SESSION, responses={"200": ok("Orders", S({"orders": {"type": "array", "items": ref("Order")}})), **auth401, "403": ERR("Not an admin account")}),
     "post": op("Order an appliance for a tenant (admins only); the hub provisions it", SESSION_CSRF, S({"tenant": str_, "owner": str_, "provider": str_, "plan": {"type": "string", "enum": ["dev", "standard"]}}, ["tenant", "owner"]), {
         "201": ok("Created", S({"order": ref("Order")})), **auth401, "403": ERR("Not an admin account, or missing x-csrf-token"),
         "409": ERR("The tenant already has an open order (order_open)"), **COMMON})},
 "/v1/admin/orders/{id}": {"get": op("One order with its timeline (admins only)", SESSION, params=[ORDER_ID], responses={
     "200": ok("The order", S({"order": ref("Order"), "timeline": {"type": "array", "items": S({"at": int_, "status": str_, "message": str_})}})),
     **auth401, "403": ERR("Not an admin account"), "404": ERR("No such order")})},
 "/v1/admin/orders/{id}/retry": {"post": op("Run a failed order again from the step that failed (admins only)", SESSION_CSRF, params=[ORDER_ID], responses={
     "204": ok("Running again"), **auth401, "403": ERR("Not an admin account, or missing x-csrf-token"), "404": ERR("No such order"),
     "409": ERR("The order has not failed (order_not_failed)")})},
 "/v1/admin/orders/{id}/cancel": {"post": op("Cancel an order: its DNS record and server are deleted and the tenant's key revoked (admins only)", SESSION_CSRF, params=[ORDER_ID], responses={
     "204": ok("Cancelling"), **auth401, "403": ERR("Not an admin account, or missing x-csrf-token"), "404": ERR("No such order"),
     "409": ERR("Already cancelled (order_cancelled)")})},
 "/v1/releases/tenant-agent": {"get": op("The tenant-agent binary new appliances install (public; its SHA-256 is pinned in their user data and sent as ETag and x-content-sha256)", [], responses={
     "200": {"description": "The binary", "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
     "404": ERR("This hub serves no release (set [provisioning] agent_file)")})},
 "/v1/enroll": {"post": op("Enroll a tenant with a single-use token and its own Ed25519 key", [], ref("EnrollRequest"), {
     "201": ok("Enrolled; pin hub_public_key", ref("EnrollResponse")),
     "401": ERR("Unknown (token_invalid) or expired (token_expired) token"), "409": ERR("Token already used (token_used)"), **COMMON})},
 "/v1/tenant/heartbeat": {"post": op("Report health; the answer carries the desired state", TENANT, ref("Heartbeat"), {
     "200": ok("Desired state", ref("HeartbeatResponse")), **tenant401, **COMMON})},
 "/v1/tenant/approvals": {"post": op("Submit an action for the owner's decision (idempotent by id)", TENANT, ref("ApprovalRequest"), {
     "201": ok("Stored", ref("SubmitResponse")), "200": ok("Already stored: its current state", ref("SubmitResponse")),
     **tenant401, "409": ERR("The id exists with different content (id_conflict)"), **COMMON})},
 "/v1/tenant/approvals/{id}": {"get": op("The state of one of this tenant's requests", TENANT, params=[ID], responses={
     "200": ok("State", ref("SubmitResponse")), **tenant401, "404": ERR("Not this tenant's request")})},
 "/v1/tenant/decisions": {"get": op("Long-poll for signed grants after a cursor", TENANT, params=[
     {"name": "after", "in": "query", "schema": {"type": "integer", "default": 0}, "description": "The cursor from the previous answer"},
     {"name": "wait", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 30, "default": 25}, "description": "Seconds to wait when nothing is there yet"}],
     desc="Answers as soon as a grant newer than `after` exists (within milliseconds of the decision), or with an empty list after `wait` seconds. Verify every grant with the hub key pinned at enrollment and against the action held locally.",
     responses={"200": ok("Grants (possibly none)", ref("DecisionsResponse")), **tenant401, "400": ERR("Bad query")})},
 "/v1/tenant/usage": {"post": op("Ship closed hourly usage buckets (idempotent: a bucket is keyed by hour, agent, provider and model, and a resend replaces it with the same numbers)", TENANT, ref("UsageReport"), {
     "200": ok("Stored", S({"accepted": int_})), **tenant401, **COMMON})},
 "/v1/tenant/approvals/{id}/outcome": {"post": op("Report how an approved action ended, for the audit log (no output leaves the VPS)", TENANT, ref("OutcomeReport"), params=[ID], responses={
     "204": ok("Recorded (or the same report again)"), **tenant401, "404": ERR("Not this tenant's request"),
     "409": ERR("A different outcome is already recorded (outcome_recorded)"), **COMMON})},
 "/v1/tenant/approvals/{id}/release": {"post": op("Ask to run a held action because the owner raised the agent's autonomy; the tenant runs it only after a 204. The hub closes the approval as approved by `autonomy` (no grant is signed; a decision the owner made first wins) and withdraws its push. The outcome follows on /outcome", TENANT, ref("ReleaseReport"), params=[ID], responses={
     "204": ok("Closed (or already closed by this notice)"), **tenant401, "404": ERR("Not this tenant's request"),
     "409": ERR("Refused, the action stays the owner's: a red or critical action (not_releasable), a level this hub does not have for the agent now (autonomy_too_low), a settings version it never signed (unknown_autonomy_version) or one replaced since (autonomy_changed: the tenant applies the newer settings and asks again), or the owner decided first (already_decided)"),
     "410": ERR("Expired unanswered (expired)"), **COMMON})},
 "/v1/tenant/policy": {"get": op("The newest signed policy bundle", TENANT, responses={
     "200": ok("The bundle; verify before installing", ref("PolicyBundle")), **tenant401, "404": ERR("None published yet")})},
 # --- the owner's app (issue 19) ---
 "/v1/agents": {"get": op("This account's agents with the autonomy the owner chose, what each level means, and the channels", SESSION, responses={
     "200": ok("Agents", S({"agents": {"type": "array", "items": ref("AgentView")}, "levels": {"type": "array", "items": S({"level": int_, "name": str_, "meaning": str_})},
                           "channels": {"type": "array", "items": str_}})), **auth401})},
 "/v1/agents/{tenant}/{agent}/autonomy": {"post": op("Choose an agent's autonomy (1 supervised, 2 trusted, 3 autonomous) and, at 3, the unlocked channels; the tenant applies it, signed, within one heartbeat", SESSION_CSRF, ref("AutonomyInput"), params=[
     {"name": "tenant", "in": "path", "required": True, "schema": str_}, {"name": "agent", "in": "path", "required": True, "schema": str_}], responses={
     "200": ok("Stored", S({"tenant": str_, "agent": str_, "version": int_})), **auth401, "403": ERR("Missing or wrong x-csrf-token"),
     "404": ERR("No such tenant, or not this account's"), **COMMON})},
 "/v1/activity": {"get": op("Every action of this account's agents, newest first: summary, tier, decision, who decided, when it ran, whether it succeeded (never output)", SESSION, params=[
     {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 200}}],
     responses={"200": ok("Activity", S({"activity": {"type": "array", "items": ref("ActivityItem")}})), "400": ERR("Bad query"), **auth401})},
 "/v1/usage": {"get": op("LLM usage this billing period (the calendar month, UTC) per agent and model, per day, the 7-day trend and cost where prices are configured", SESSION, responses={
     "200": ok("Usage", ref("UsageView")), **auth401})},
 "/v1/tenant/activity": {"post": op("Report actions run without asking (the agent's autonomy allowed them); idempotent by entry id", TENANT, ref("ActivityReport"), responses={
     "200": ok("Stored", S({"accepted": int_})), **tenant401, **COMMON})},
}

# Billing (issue 18).
obj = {"type": "object"}
paths.update({
 "/v1/billing": {"get": op("The owner's plan, subscription, grace period, onboarding answers and order with its timeline", SESSION, responses={
     "200": ok("Billing status", S({"enabled": {"type": "boolean"}, "plan": {"type": ["string", "null"]}, "customer": {"type": "boolean"},
         "subscription": obj, "grace_until": {"type": ["integer", "null"]}, "onboarding": obj, "order": obj})), **auth401})},
 "/v1/billing/onboarding": {"post": op("Describe the business and pick tool stack, agent and LLM provider", SESSION_CSRF,
     S({"business": str_, "tools": {"type": "array", "items": str_}, "agent": {"enum": ["openclaw"]},
        "llm_provider": {"enum": ["anthropic", "openai", "openrouter", "mistral"]}}, ["business", "agent", "llm_provider"]), {
     "200": ok("Saved", S({"onboarding": obj})), **auth401, "403": ERR("Missing or wrong x-csrf-token"),
     "409": ERR("The tenant name is taken (tenant_taken)"), **COMMON})},
 "/v1/billing/checkout": {"post": op("Start a Stripe Checkout Session (subscription mode) for the owner's Stripe customer (made once, reused); without onboarding answers, defaults are used", SESSION_CSRF, responses={
     "200": ok("Redirect the browser to url", S({"url": str_, "id": str_})), **auth401, "403": ERR("Missing or wrong x-csrf-token"),
     "409": ERR("Billing is off (billing_off) or already subscribed (already_subscribed)"),
     "502": ERR("Stripe is unavailable; try again")})},
 "/v1/billing/free": {"post": op("Billing off: confirm the free dev plan, which orders the appliance once", SESSION_CSRF, responses={
     "200": ok("Ordered", S({"plan": str_, "order": int_})), **auth401, "403": ERR("Missing or wrong x-csrf-token"),
     "409": ERR("Billing is on (billing_on)")})},
 "/v1/billing/portal": {"post": op("A Stripe customer portal session for the owner", SESSION_CSRF, responses={
     "200": ok("Open url", S({"url": str_})), **auth401, "403": ERR("Missing or wrong x-csrf-token"),
     "409": ERR("Billing is off (billing_off) or no customer yet (no_customer)")})},
 "/v1/billing/invoices": {"get": op("The owner's invoices, newest first", SESSION, responses={
     "200": ok("Invoices", S({"invoices": {"type": "array", "items": obj}})), **auth401})},
 "/v1/billing/usage": {"get": op("Token usage since `since` (default: the current billing period) per agent and model, and per hour", SESSION,
     params=[{"name": "since", "in": "query", "schema": int_}], responses={
     "200": ok("Usage", S({"since": int_, "until": int_, "totals": {"type": "array", "items": obj}, "hours": {"type": "array", "items": obj}})),
     **auth401, "400": ERR("Bad query")})},
 "/v1/stripe/webhook": {"post": op("Stripe's webhook: verified over the raw body (Stripe-Signature, 300 s tolerance), stored by event id, handled by a job", [],
     obj, {"200": ok("Stored (or a duplicate)", S({"received": {"type": "boolean"}, "duplicate": {"type": "boolean"}})),
     "400": ERR("Missing, forged or stale signature (bad_signature); not an event (malformed_event)"),
     "409": ERR("Billing is off (billing_off)")})},
})

S = lambda props, req=None, **kw: {"type": "object", "properties": props, **({"required": req} if req else {}), **kw}
str_ = {"type": "string"}; int_ = {"type": "integer"}
nstr = {"type": ["string", "null"]}; nint = {"type": ["integer", "null"]}
schemas = {
 "Order": S({"id": int_, "tenant": str_, "owner": nstr, "provider": str_, "plan": str_,
     "status": {"type": "string", "enum": ["created", "server_requested", "server_running", "dns_ready", "installing",
                                           "enrolled", "active", "failed", "cancelling", "cancelled"]},
     "server_id": nstr, "ipv4": nstr, "ipv6": nstr, "failed_step": nstr, "last_error": nstr,
     "enroll_deadline": nint, "created_at": int_, "updated_at": int_}),
 "PushSubscription": S({"endpoint": {"type": "string", "format": "uri"}, "expirationTime": {"type": ["integer", "null"]},
     "keys": S({"p256dh": str_, "auth": str_}, ["p256dh", "auth"])}, ["endpoint", "keys"]),
 "Device": S({"id": int_, "account": str_, "push_service": str_, "user_agent": str_, "created_at": int_,
     "last_success_at": {"type": ["integer", "null"]}, "last_error": {"type": ["string", "null"]}, "last_error_at": {"type": ["integer", "null"]},
     "sent": int_, "failed": int_}),
 "Error": S({"error": S({"code": str_, "message": str_}, ["code", "message"])}, ["error"]),
 "Health": S({"status": str_, "version": str_, "uptime_secs": {"type": "integer", "minimum": 0}, "hub_key_fingerprint": str_}, ["status", "version", "uptime_secs"]),
 "Credentials": S({"email": {"type": "string", "format": "email"}, "password": {"type": "string", "minLength": 12}}, ["email", "password"], additionalProperties=False),
 "SessionInfo": S({"email": str_, "role": {"enum": ["customer", "admin"]}, "csrf_token": str_, "expires_at": int_}, ["email", "role", "csrf_token"]),
 "TenantView": S({"name": str_, "owner": {"type": ["string", "null"]}, "health": {"enum": ["pending", "healthy", "unhealthy", "stale"]},
     "enrolled_at": {"type": ["integer", "null"]}, "last_heartbeat_at": {"type": ["integer", "null"]}, "hostname": {"type": ["string", "null"]},
     "agent_version": {"type": ["string", "null"]}, "policy_version": int_, "pending_approvals": int_, "heartbeat": {"oneOf": [ref("Heartbeat"), {"type": "null"}]}}),
 "Action": {"oneOf": [
     S({"kind": {"const": "command"}, "argv": {"type": "array", "items": str_, "minItems": 1}, "cwd": str_, "secret_refs": {"type": "array", "items": str_},
        "files": {"type": "array", "items": S({"path": str_, "sha256": str_}, ["path", "sha256"], additionalProperties=False),
                  "description": "Files the command runs, with the SHA-256 of the content that was judged"}}, ["kind", "argv", "cwd"]),
     S({"kind": {"const": "tool"}, "tool": str_, "args": {}, "cwd": {"type": ["string", "null"]}, "secret_refs": {"type": "array", "items": str_}}, ["kind", "tool", "args"])],
     "description": "Exactly what will run. Secrets appear only as names (secret_refs, SECRET_REF(name)), never as values."},
 "ApprovalRequest": S({"id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{8,64}$"}, "agent": str_, "tier": {"enum": ["green", "yellow", "external", "red", "critical"]},
     "reasons": {"type": "array", "items": str_, "maxItems": 20}, "summary": {"type": "string", "maxLength": 500}, "action": ref("Action"),
     "action_hash": {"type": "string", "description": "Lowercase hex SHA-256 of the RFC 8785 canonical JSON of the action with secret_refs sorted and de-duplicated"},
     "created_at": int_, "secret_bindings": {"type": "object", "additionalProperties": str_, "description": "Where each named secret may go, in words"},
     "effects": {"type": "array", "maxItems": 12, "items": ref("Effect")},
     "agent_reason": {"type": "string", "maxLength": 500, "description": "The agent's own stated reason (the agent's words, redacted)"}},
    ["id", "agent", "tier", "reasons", "summary", "action", "action_hash", "created_at"], additionalProperties=False),
 "Effect": S({"kind": {"enum": ["changes", "undo", "credential", "destination"]}, "text": str_}, ["kind", "text"], additionalProperties=False),
 "Approval": S({"id": str_, "tenant": str_, "agent": str_, "tier": str_, "reasons": {"type": "array", "items": str_}, "summary": str_,
     "action": ref("Action"), "action_hash": str_, "received_at": int_, "expires_at": int_, "status": {"enum": ["pending", "approved", "denied", "expired"]},
     "decided_by": {"type": ["string", "null"]}, "decided_at": {"type": ["integer", "null"]}, "scope": {"enum": ["once", "action24h", None]}, "reason": {"type": ["string", "null"]},
     "allowed_by_autonomy": {"type": "boolean", "description": "Closed because the autonomy level the owner set runs it without asking (decided_by is `autonomy`, no grant was signed)"},
     "secret_bindings": {"type": "object", "additionalProperties": str_},
     "effects": {"type": "array", "items": ref("Effect")}, "agent_reason": {"type": ["string", "null"]},
     "tier_words": {"type": "string", "description": "The tier in the owner's words"},
     "outcome": {"oneOf": [ref("OutcomeReport"), {"type": "null"}]}, "outcome_at": {"type": ["integer", "null"]}}),
 "DecisionInput": S({"decision": {"enum": ["approve", "deny"]}, "scope": {"enum": ["once", "action24h"], "default": "once"}, "reason": {"type": "string", "maxLength": 500}}, ["decision"], additionalProperties=False),
 "Grant": S({"tenant": str_, "request_id": str_, "action_hash": str_, "decision": {"enum": ["approve", "deny"]}, "scope": {"enum": ["once", "action24h"]},
     "decided_by": str_, "decided_at": int_, "expires_at": int_, "reason": str_}, ["tenant", "request_id", "action_hash", "decision", "scope", "decided_by", "decided_at", "expires_at"], additionalProperties=False),
 "SignedGrant": S({"grant": ref("Grant"), "signature": {"type": "string", "description": "Ed25519 by the hub key over \"tenant-agent-grant-v1\\n\" + RFC 8785 canonical JSON of grant; base64url"}}, ["grant", "signature"]),
 "DecisionsResponse": S({"grants": {"type": "array", "items": {"allOf": [ref("SignedGrant"), S({"seq": int_}, ["seq"])]}}, "cursor": int_}, ["grants", "cursor"]),
 "UsageBucket": S({"hour": {"type": "integer", "multipleOf": 3600}, "agent": str_, "provider": str_, "model": str_,
     **{k: {"type": "integer", "minimum": 0} for k in ["requests", "incomplete", "errors", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"]}},
     ["hour", "agent", "provider", "model", "requests", "incomplete", "errors", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"], additionalProperties=False),
 "UsageReport": S({"buckets": {"type": "array", "maxItems": 1000, "items": ref("UsageBucket")}}, ["buckets"], additionalProperties=False),
 "OutcomeReport": S({"status": {"enum": ["ran", "failed", "allowed", "denied", "expired"]}, "exit_code": {"type": ["integer", "null"]},
     "duration_ms": {"type": ["integer", "null"]}, "secrets_used": {"type": "array", "items": str_, "description": "Names only"}}, ["status"], additionalProperties=False),
 "ReleaseReport": S({"level": {"type": "integer", "enum": [2, 3], "description": "The level in force for the agent"},
     "autonomy_version": {"type": "integer", "minimum": 1, "description": "The version of the hub's signed autonomy settings that allowed it"}}, ["level", "autonomy_version"], additionalProperties=False),
 "SubmitResponse": S({"id": str_, "status": {"enum": ["pending", "approved", "denied", "expired"]}, "expires_at": int_}, ["id", "status", "expires_at"]),
 "EnrollRequest": S({"token": str_, "public_key": {"type": "string", "description": "Ed25519, 32 bytes, base64url"}, "hostname": str_, "agent_version": str_}, ["token", "public_key"], additionalProperties=False),
 "EnrollResponse": S({"tenant": str_, "hub_public_key": str_, "hub_key_fingerprint": {"type": "string", "description": "SHA256:<base64 of SHA-256 of the raw key>"}}, ["tenant", "hub_public_key", "hub_key_fingerprint"]),
 "Heartbeat": S({"agent_version": str_, "runtime_kind": str_, "runtime_version": {"type": ["string", "null"]},
     "runtime_health": {"enum": ["healthy", "starting", "unhealthy", "failed", "stopped"]}, "uptime_secs": int_, "disk_free_bytes": int_, "disk_total_bytes": int_,
     "pending_approvals": int_, "last_backup_at": {"type": ["integer", "null"]}, "policy_version": int_, "acked_commands": {"type": "array", "items": int_}}),
 "HeartbeatResponse": S({"server_time": int_, "desired": S({"policy_version": int_, "commands": {"type": "array", "items": S({"id": int_, "kind": {"enum": ["restart-runtime"]}})},
     "autonomy": ref("SignedAutonomy")})}, ["server_time", "desired"]),
 "SignedAutonomy": S({"settings": S({"tenant": str_, "version": int_, "updated_at": int_, "agents": {"type": "object", "additionalProperties": S({"level": {"enum": [1, 2, 3]}, "channels": {"type": "array", "items": str_}}, ["level"])}},
     ["tenant", "version", "updated_at", "agents"]), "signature": {"type": "string", "description": "Ed25519 over \"tenant-agent-autonomy-v1\\n\" + canonical JSON of settings"}}, ["settings", "signature"],
     description="The owner's autonomy per agent; the tenant verifies it with the pinned hub key and applies only a newer version"),
 "AutonomyInput": S({"level": {"enum": [1, 2, 3]}, "channels": {"type": "array", "items": str_}}, ["level"], additionalProperties=False),
 "AgentView": S({"tenant": str_, "agent": str_, "level": {"type": ["integer", "null"]}, "channels": {"type": "array", "items": str_},
     "updated_by": {"type": ["string", "null"]}, "updated_at": {"type": ["integer", "null"]}}),
 "ActivityItem": S({"id": str_, "tenant": str_, "agent": str_, "summary": str_, "tier": str_, "tier_words": str_,
     "decision": {"enum": ["pending", "approved", "denied", "expired", "allowed"]}, "decided_by": {"type": ["string", "null"]}, "decided_at": {"type": ["integer", "null"]},
     "at": int_, "ran_at": {"type": ["integer", "null"]}, "outcome": {"enum": ["ran", "failed", "allowed", "denied", "expired", None]},
     "succeeded": {"type": ["boolean", "null"]}, "exit_code": {"type": ["integer", "null"]}}),
 "ActivityReport": S({"entries": {"type": "array", "maxItems": 200, "items": S({"id": str_, "agent": str_, "tier": {"enum": ["green", "yellow", "external", "red", "critical"]},
     "summary": str_, "status": {"enum": ["ran", "failed", "allowed", "denied", "expired"]}, "exit_code": {"type": ["integer", "null"]}, "ran_at": int_,
     "decided_by": {"type": "string", "maxLength": 200, "description": "Who allowed it when not the autonomy level (an earlier 24 h approval)"}},
     ["id", "agent", "tier", "summary", "status", "ran_at"], additionalProperties=False)}}, ["entries"], additionalProperties=False),
 "Tokens": S({"input": int_, "output": int_, "cache_read": int_, "cache_write": int_}),
 "UsageView": S({"period_start": int_, "period_end": int_,
     "lines": {"type": "array", "items": S({"tenant": str_, "agent": str_, "model": str_, "requests": int_, "tokens": ref("Tokens"), "cost_usd": {"type": ["number", "null"]}})},
     "days": {"type": "array", "items": S({"day": int_, "tokens": ref("Tokens"), "cost_usd": {"type": ["number", "null"]}})},
     "trend_percent": {"type": ["integer", "null"]}, "total_tokens": ref("Tokens"), "total_cost_usd": {"type": ["number", "null"]}}),
 "PolicyBundle": S({"manifest": S({"version": int_, "created_at": int_, "files": {"type": "object", "additionalProperties": {"type": "string"}}}),
     "files": {"type": "object", "additionalProperties": str_}, "signature": {"type": "string", "description": "Ed25519 over \"tenant-agent-policy-v1\\n\" + canonical JSON of manifest"}}, ["manifest", "files", "signature"]),
}

doc = {
 "openapi": "3.1.0",
 "info": {"title": "hub", "version": "0.1.0", "description":
   "The central service: accounts, tenant enrollment, fleet sync, signed policies and approvals. "
   "Customers use cookie sessions (state-changing requests also send x-csrf-token). Tenants sign every request after enrollment: "
   "x-tenant, x-timestamp (unix seconds, within 300 s of the hub's clock), x-nonce (16+ random bytes, base64url, never reused) and "
   "x-signature = base64url Ed25519 over \"tenant-agent-request-v1\\nMETHOD\\nPATH?QUERY\\nTENANT\\nTIMESTAMP\\nNONCE\\nhex(SHA-256(body))\". "
   "Every error is JSON: {\"error\": {\"code\", \"message\"}}."},
 "paths": paths,
 "components": {"schemas": schemas, "securitySchemes": {
   "session": {"type": "apiKey", "in": "cookie", "name": "hub_session"},
   "csrf": {"type": "apiKey", "in": "header", "name": "x-csrf-token"},
   "tenantSignature": {"type": "apiKey", "in": "header", "name": "x-signature", "description": "With x-tenant, x-timestamp and x-nonce; see info.description"}}},
}
out = pathlib.Path(__file__).resolve().parent.parent / "openapi.json"
out.write_text(json.dumps(doc, indent=2) + "\n")

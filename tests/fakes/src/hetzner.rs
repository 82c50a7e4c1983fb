//! The Hetzner Cloud API (`https://api.hetzner.cloud/v1`) on loopback: the part the hub's
//! provisioning uses (servers, actions, DNS zone RRSets), with faults a test can script.
//!
//! Faithful to the API reference:
//! - Auth by `Authorization: Bearer <token>`; anything else is 401 `unauthorized`.
//! - Errors are `{"error":{"code","message","details"}}` with the documented codes and statuses
//!   (`invalid_input` and `json_error` 400, `unauthorized` 401, `not_found` 404,
//!   `uniqueness_error` 409, `locked` 423, `rate_limit_exceeded` 429, `server_error` 500,
//!   `unavailable` 503, `timeout` 504); `invalid_input` and `uniqueness_error` name the
//!   offending fields in `details.fields`.
//! - `POST /servers` checks `name` (required, RFC 1123 hostname, unique), `server_type` and
//!   `image` (required), `location` (one of the real ones), `labels` (strings), `user_data`
//!   (at most 32 KiB), `start_after_create`, `public_net.enable_ipv4/6`, and answers 201 with
//!   `server` (`initializing`), `action` (`create_server`, `running`), `next_actions`
//!   (`start_server` unless `start_after_create` is false) and `root_password` (null when
//!   `ssh_keys` are given).
//! - `GET /servers` filters by `name`, `label_selector` (`k=v`, `k==v`, `k!=v`, `k`, `!k`,
//!   `k in (a,b)`, `k notin (a,b)`, comma = and) and `status`, and paginates (`page`,
//!   `per_page` ≤ 50, `meta.pagination`). `GET /servers/{id}`, `DELETE /servers/{id}` (an
//!   action `delete_server`).
//! - Actions (`GET /actions/{id}`, also `/servers/actions/{id}` and `/zones/actions/{id}`) are
//!   `running` until [`FakeHetzner::set_action_delay`] has passed since their creation, then
//!   `success` (`progress` 100, `finished` set); a server is `initializing` until its
//!   `create_server` action succeeds, then `running` (`off` if not started after create).
//! - Zone RRSets: `POST /zones/{id_or_name}/rrsets` (201 `rrset` + `action` `create_rrset`),
//!   `GET /zones/{zone}/rrsets` and `/rrsets/{name}/{type}`,
//!   `DELETE /zones/{zone}/rrsets/{name}/{type}` (`action` `delete_rrset`); RRSet ids are
//!   `name/TYPE`; A and AAAA values must be addresses; an existing name and type is 409
//!   `uniqueness_error`, an unknown zone 404 `not_found`.
//! - `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (Unix time at which the
//!   bucket is full again) on every response; a token bucket of `limit` requests refilled
//!   evenly over `window` (Hetzner: 3600 per hour, one a second); empty → 429. Requests with a
//!   bad token do not spend it.
//! - Invalid input is 400 `invalid_input`, as the error table documents (oversized `user_data`
//!   included); a body that is not a JSON object is 400 `json_error`.
//!
//! Simplified:
//! - Only these routes; zones are made by the test ([`FakeHetzner::add_zone`]), there are no
//!   SSH keys, networks, firewalls, images or server types as resources (any `server_type` and
//!   `image` name is accepted and echoed with made-up details).
//! - A deleted server disappears at once (the real one lingers until its action ends); no
//!   action ever locks a resource by itself: `locked` only comes from [`Fault::Locked`].
//! - Addresses come from the documentation ranges (192.0.2.0/24, 198.51.100.0/24,
//!   203.0.113.0/24, 2001:db8::/32); label keys and values are not checked beyond being strings.
//! - A `create_server` action that fails ([`Fault::ActionFails`]) leaves the server `off`; the
//!   rate limit is one bucket for the whole fake (the real one is per project).
//! - Time is the wall clock plus whatever [`FakeHetzner::advance`] added; actions, the rate
//!   bucket and timestamps all use it.
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Extension;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Map, Value, json};
use tokio::sync::Notify;

/// The largest `user_data` the API accepts, in bytes.
pub const MAX_USER_DATA: usize = 32 * 1024;

/// The kinds of request, for scripting faults and counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    CreateServer,
    ListServers,
    GetServer,
    DeleteServer,
    GetAction,
    CreateRrset,
    ListRrsets,
    GetRrset,
    DeleteRrset,
}

/// A scripted failure, played once by the next request of its [`Route`] (after the token and
/// the rate limit were checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer this HTTP status with this error code, e.g. `Status(503, "unavailable")`.
    Status(u16, &'static str),
    /// 429 `rate_limit_exceeded` with `RateLimit-Remaining: 0` and a reset this far ahead.
    RateLimited { reset_in_secs: u64 },
    /// 423 `locked`: an action is already running on the resource.
    Locked,
    /// Hold the request for [`FakeHetzner::set_hang`] (past the client's timeout), doing
    /// nothing, then answer 504 `timeout`.
    Timeout,
    /// Close the connection without answering, doing nothing.
    Drop,
    /// Do the request (the server or RRSet IS created, or deleted) but answer 500
    /// `server_error`: the client never learns the outcome.
    CreateThenFail,
    /// Do the request and answer normally, but the action it starts ends in `error`
    /// (`action_failed`); a server whose create action failed stays `off`.
    ActionFails,
}

/// A server as the fake holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerInfo {
    pub id: u64,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// `initializing`, `running` or `off`.
    pub status: String,
    pub user_data: Option<String>,
    pub server_type: String,
    pub image: String,
    pub location: String,
    pub ipv4: Option<String>,
    /// The /64 network, like the API's `public_net.ipv6.ip`.
    pub ipv6: Option<String>,
}

/// An RRSet as the fake holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct RrsetInfo {
    /// The zone's name.
    pub zone: String,
    pub name: String,
    pub rtype: String,
    pub ttl: Option<u64>,
    /// The records' values, in order.
    pub records: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

/// One request the fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// `None` for paths the fake does not serve.
    pub route: Option<Route>,
    /// When it arrived (the fake's clock).
    pub at: SystemTime,
    /// The status answered; `None` while pending or if the connection was dropped.
    pub status: Option<u16>,
}

/// A running fake of the Hetzner Cloud API.
#[derive(Clone)]
pub struct FakeHetzner {
    url: String,
    shared: Arc<Shared>,
}

struct Shared {
    token: String,
    state: Mutex<St>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, St> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Closes the connection it came in on when notified.
#[derive(Clone)]
struct Conn(Arc<Notify>);

struct Server {
    id: u64,
    name: String,
    labels: BTreeMap<String, String>,
    user_data: Option<String>,
    server_type: String,
    image: String,
    location: &'static Location,
    ipv4: Option<String>,
    ipv6: Option<String>,
    created: SystemTime,
    start: bool,
    create_action: u64,
}

struct Action {
    id: u64,
    command: &'static str,
    started: SystemTime,
    at: Instant,
    delay: Duration,
    fails: bool,
    resources: Vec<(u64, &'static str)>,
}

struct Zone {
    id: u64,
    name: String,
}

struct Rrset {
    zone: u64,
    name: String,
    rtype: String,
    ttl: Option<u64>,
    records: Vec<(String, String)>,
    labels: BTreeMap<String, String>,
}

struct Bucket {
    limit: u32,
    window: Duration,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn per_sec(&self) -> f64 {
        f64::from(self.limit) / self.window.as_secs_f64().max(1e-9)
    }
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_sec()).min(f64::from(self.limit));
        self.at = now;
    }
    fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
    /// (limit, remaining, Unix time when full again).
    fn headers(&self, wall: SystemTime) -> (u32, u32, u64) {
        let missing = f64::from(self.limit) - self.tokens;
        let full_in = (missing / self.per_sec()).ceil().max(0.0) as u64;
        (self.limit, self.tokens.floor() as u32, unix(wall) + full_in)
    }
}

struct St {
    offset: Duration,
    action_delay: Duration,
    hang: Duration,
    bucket: Bucket,
    faults: HashMap<Route, VecDeque<Fault>>,
    servers: BTreeMap<u64, Server>,
    actions: BTreeMap<u64, Action>,
    zones: Vec<Zone>,
    rrsets: Vec<Rrset>,
    log: Vec<Logged>,
    next_id: u64,
    addresses: u32,
    deleted_servers: usize,
}

impl St {
    fn now(&self) -> Instant {
        Instant::now() + self.offset
    }
    fn wall(&self) -> SystemTime {
        SystemTime::now() + self.offset
    }
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
    fn action(
        &mut self,
        command: &'static str,
        resources: Vec<(u64, &'static str)>,
        fails: bool,
    ) -> u64 {
        let id = self.id();
        let action = Action {
            id,
            command,
            started: self.wall(),
            at: self.now(),
            delay: self.action_delay,
            fails,
            resources,
        };
        self.actions.insert(id, action);
        id
    }
    /// `Some(ok)` once the action has ended.
    fn ended(&self, id: u64) -> Option<bool> {
        let a = self.actions.get(&id)?;
        (self.now() >= a.at + a.delay).then_some(!a.fails)
    }
    fn status(&self, s: &Server) -> &'static str {
        match self.ended(s.create_action) {
            None => "initializing",
            Some(true) if s.start => "running",
            Some(_) => "off",
        }
    }
    /// The action as JSON; `fresh` renders it as at its creation (`running`, progress 0).
    fn action_json(&self, a: &Action, fresh: bool) -> Value {
        let now = self.now();
        let done = !fresh && now >= a.at + a.delay;
        let progress = if done {
            100
        } else if fresh || a.delay.is_zero() {
            0
        } else {
            let part = now.saturating_duration_since(a.at).as_secs_f64() / a.delay.as_secs_f64();
            ((part * 100.0) as u64).min(99)
        };
        let (status, error) = match (done, a.fails) {
            (false, _) => ("running", Value::Null),
            (true, false) => ("success", Value::Null),
            (true, true) => (
                "error",
                json!({"code": "action_failed", "message": "Action failed"}),
            ),
        };
        let resources: Vec<Value> = a
            .resources
            .iter()
            .map(|(id, t)| json!({"id": id, "type": t}))
            .collect();
        json!({
            "id": a.id,
            "command": a.command,
            "status": status,
            "progress": progress,
            "started": rfc3339(a.started),
            "finished": if done { json!(rfc3339(a.started + a.delay)) } else { Value::Null },
            "resources": resources,
            "error": error,
        })
    }
    fn action_by_id(&self, id: u64, fresh: bool) -> Value {
        self.actions
            .get(&id)
            .map(|a| self.action_json(a, fresh))
            .unwrap_or(Value::Null)
    }
    fn server_json(&self, s: &Server) -> Value {
        let loc = s.location;
        let ipv4 = s.ipv4.as_ref().map(|ip| {
            json!({"id": s.id + 1_000_000, "ip": ip, "blocked": false,
                   "dns_ptr": format!("static.{}.clients.your-server.de",
                       ip.split('.').rev().collect::<Vec<_>>().join("."))})
        });
        let ipv6 = s
            .ipv6
            .as_ref()
            .map(|ip| json!({"id": s.id + 2_000_000, "ip": ip, "blocked": false, "dns_ptr": []}));
        json!({
            "id": s.id,
            "name": s.name,
            "status": self.status(s),
            "created": rfc3339(s.created),
            "public_net": {"ipv4": ipv4, "ipv6": ipv6, "floating_ips": [], "firewalls": []},
            "private_net": [],
            "server_type": {
                "id": 22, "name": s.server_type, "description": s.server_type.to_uppercase(),
                "cores": 2, "memory": 4.0, "disk": 40, "storage_type": "local",
                "cpu_type": "shared", "architecture": "x86", "deprecated": false,
                "prices": [],
            },
            "datacenter": {
                "id": loc.id, "name": loc.datacenter, "description": loc.datacenter,
                "location": location_json(loc),
            },
            "location": location_json(loc),
            "image": {
                "id": 114_690_387, "type": "system", "status": "available", "name": s.image,
                "description": s.image, "os_flavor": s.image.split('-').next().unwrap_or(""),
                "architecture": "x86", "rapid_deploy": true, "deprecated": null, "labels": {},
            },
            "iso": null,
            "rescue_enabled": false,
            "locked": false,
            "backup_window": null,
            "outgoing_traffic": 0,
            "ingoing_traffic": 0,
            "included_traffic": 21_990_232_555_520_u64,
            "protection": {"delete": false, "rebuild": false},
            "labels": s.labels,
            "volumes": [],
            "load_balancers": [],
            "primary_disk_size": 40,
            "placement_group": null,
        })
    }
    fn zone(&self, id_or_name: &str) -> Option<&Zone> {
        self.zones
            .iter()
            .find(|z| z.name == id_or_name || z.id.to_string() == id_or_name)
    }
    fn rrset_json(r: &Rrset) -> Value {
        let records: Vec<Value> = r
            .records
            .iter()
            .map(|(v, c)| json!({"value": v, "comment": c}))
            .collect();
        json!({
            "id": format!("{}/{}", r.name, r.rtype),
            "name": r.name,
            "type": r.rtype,
            "ttl": r.ttl,
            "labels": r.labels,
            "protection": {"change": false},
            "records": records,
            "zone": r.zone,
        })
    }
}

struct Location {
    id: u64,
    name: &'static str,
    description: &'static str,
    country: &'static str,
    city: &'static str,
    latitude: f64,
    longitude: f64,
    network_zone: &'static str,
    datacenter: &'static str,
}

const LOCATIONS: [Location; 6] = [
    Location {
        id: 1,
        name: "fsn1",
        description: "Falkenstein DC Park 1",
        country: "DE",
        city: "Falkenstein",
        latitude: 50.47612,
        longitude: 12.370071,
        network_zone: "eu-central",
        datacenter: "fsn1-dc14",
    },
    Location {
        id: 2,
        name: "nbg1",
        description: "Nuremberg DC Park 1",
        country: "DE",
        city: "Nuremberg",
        latitude: 49.452102,
        longitude: 11.076665,
        network_zone: "eu-central",
        datacenter: "nbg1-dc3",
    },
    Location {
        id: 3,
        name: "hel1",
        description: "Helsinki DC Park 1",
        country: "FI",
        city: "Helsinki",
        latitude: 60.169855,
        longitude: 24.938379,
        network_zone: "eu-central",
        datacenter: "hel1-dc2",
    },
    Location {
        id: 4,
        name: "ash",
        description: "Ashburn, VA",
        country: "US",
        city: "Ashburn, VA",
        latitude: 39.0437,
        longitude: -77.4875,
        network_zone: "us-east",
        datacenter: "ash-dc1",
    },
    Location {
        id: 5,
        name: "hil",
        description: "Hillsboro, OR",
        country: "US",
        city: "Hillsboro, OR",
        latitude: 45.54222,
        longitude: -122.95194,
        network_zone: "us-west",
        datacenter: "hil-dc1",
    },
    Location {
        id: 6,
        name: "sin",
        description: "Singapore",
        country: "SG",
        city: "Singapore",
        latitude: 1.283333,
        longitude: 103.833333,
        network_zone: "ap-southeast",
        datacenter: "sin-dc1",
    },
];

fn location_json(l: &Location) -> Value {
    json!({
        "id": l.id, "name": l.name, "description": l.description, "country": l.country,
        "city": l.city, "latitude": l.latitude, "longitude": l.longitude,
        "network_zone": l.network_zone,
    })
}

type Reply = (u16, Value);

fn error(status: u16, code: &str, message: &str) -> Reply {
    error_with(status, code, message, json!({}))
}

fn error_with(status: u16, code: &str, message: &str, details: Value) -> Reply {
    (
        status,
        json!({"error": {"code": code, "message": message, "details": details}}),
    )
}

fn invalid(field: &str, message: &str) -> Reply {
    error_with(
        400,
        "invalid_input",
        &format!("invalid input in field '{field}'"),
        json!({"fields": [{"name": field, "messages": [message]}]}),
    )
}

fn not_found(what: &str) -> Reply {
    error(404, "not_found", &format!("{what} not found"))
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `2016-01-30T23:55:00+00:00`, the API's timestamp format.
fn rfc3339(t: SystemTime) -> String {
    let secs = unix(t);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Days to civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}+00:00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn pct_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if plus_is_space && b == b'+' { b' ' } else { b });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (pct_decode(k, true), pct_decode(v, true))
        })
        .collect()
}

/// RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens.
fn valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

enum Term {
    Eq(String, String),
    Ne(String, String),
    Has(String),
    Lacks(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

fn parse_selector(sel: &str) -> Option<Vec<Term>> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in sel.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&sel[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&sel[start..]);
    let set = |s: &str| -> Option<Vec<String>> {
        let s = s.trim().strip_prefix('(')?.strip_suffix(')')?;
        Some(s.split(',').map(|v| v.trim().to_owned()).collect())
    };
    let key_ok = |k: &str| !k.is_empty() && !k.contains(char::is_whitespace);
    parts
        .into_iter()
        .map(|p| {
            let p = p.trim();
            let term = if let Some((k, v)) = p.split_once("!=") {
                Term::Ne(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
                Term::Eq(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some((k, v)) = p.split_once(" notin ") {
                Term::NotIn(k.trim().to_owned(), set(v)?)
            } else if let Some((k, v)) = p.split_once(" in ") {
                Term::In(k.trim().to_owned(), set(v)?)
            } else if let Some(k) = p.strip_prefix('!') {
                Term::Lacks(k.trim().to_owned())
            } else {
                Term::Has(p.to_owned())
            };
            let key = match &term {
                Term::Eq(k, _)
                | Term::Ne(k, _)
                | Term::Has(k)
                | Term::Lacks(k)
                | Term::In(k, _)
                | Term::NotIn(k, _) => k,
            };
            key_ok(key).then_some(term)
        })
        .collect()
}

fn selects(terms: &[Term], labels: &BTreeMap<String, String>) -> bool {
    terms.iter().all(|t| match t {
        Term::Eq(k, v) => labels.get(k) == Some(v),
        Term::Ne(k, v) => labels.get(k) != Some(v),
        Term::Has(k) => labels.contains_key(k),
        Term::Lacks(k) => !labels.contains_key(k),
        Term::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
        Term::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
    })
}

fn labels_of(body: &Map<String, Value>) -> Result<BTreeMap<String, String>, Reply> {
    match body.get("labels") {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(invalid("labels", "label values must be strings")),
            })
            .collect(),
        Some(_) => Err(invalid("labels", "must be an object")),
    }
}

fn json_body(body: &[u8]) -> Result<Map<String, Value>, Reply> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(error(
            400,
            "json_error",
            "Invalid JSON input in your request",
        )),
    }
}

fn classify(method: &Method, path: &str) -> Option<(Route, Vec<String>)> {
    let rest = path.strip_prefix("/v1/")?;
    let segs: Vec<String> = rest
        .trim_end_matches('/')
        .split('/')
        .map(|s| pct_decode(s, false))
        .collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let route = match (method.as_str(), s.as_slice()) {
        ("POST", ["servers"]) => Route::CreateServer,
        ("GET", ["servers"]) => Route::ListServers,
        ("GET", ["actions", _]) | ("GET", ["servers" | "zones", "actions", _]) => Route::GetAction,
        ("GET", ["servers", _]) => Route::GetServer,
        ("DELETE", ["servers", _]) => Route::DeleteServer,
        ("POST", ["zones", _, "rrsets"]) => Route::CreateRrset,
        ("GET", ["zones", _, "rrsets"]) => Route::ListRrsets,
        ("GET", ["zones", _, "rrsets", _, _]) => Route::GetRrset,
        ("DELETE", ["zones", _, "rrsets", _, _]) => Route::DeleteRrset,
        _ => return None,
    };
    Some((route, segs))
}

fn dispatch(
    st: &mut St,
    route: Route,
    segs: &[String],
    query: Option<&str>,
    body: &[u8],
    fails: bool,
) -> Reply {
    let seg = |i: usize| segs.get(i).map(String::as_str).unwrap_or("");
    let out = match route {
        Route::CreateServer => create_server(st, body, fails),
        Route::ListServers => list_servers(st, query),
        Route::GetServer => {
            let id = seg(1).parse::<u64>().ok();
            match id.and_then(|id| st.servers.get(&id)) {
                Some(s) => Ok((200, json!({"server": st.server_json(s)}))),
                None => Err(not_found("server")),
            }
        }
        Route::DeleteServer => match seg(1)
            .parse::<u64>()
            .ok()
            .filter(|id| st.servers.contains_key(id))
        {
            Some(id) => {
                st.servers.remove(&id);
                st.deleted_servers += 1;
                let a = st.action("delete_server", vec![(id, "server")], fails);
                Ok((200, json!({"action": st.action_by_id(a, true)})))
            }
            None => Err(not_found("server")),
        },
        Route::GetAction => {
            let id = segs.last().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
            match st.actions.get(&id) {
                Some(a) => Ok((200, json!({"action": st.action_json(a, false)}))),
                None => Err(not_found("action")),
            }
        }
        Route::CreateRrset => create_rrset(st, seg(1), body, fails),
        Route::ListRrsets => match st.zone(seg(1)).map(|z| z.id) {
            Some(zone) => {
                let list: Vec<Value> = st
                    .rrsets
                    .iter()
                    .filter(|r| r.zone == zone)
                    .map(St::rrset_json)
                    .collect();
                let n = list.len();
                Ok((
                    200,
                    json!({"rrsets": list, "meta": pagination(1, n.max(1), n)}),
                ))
            }
            None => Err(not_found("zone")),
        },
        Route::GetRrset | Route::DeleteRrset => {
            let Some(zone) = st.zone(seg(1)).map(|z| z.id) else {
                return not_found("zone");
            };
            let (name, rtype) = (seg(3), seg(4));
            let at = st
                .rrsets
                .iter()
                .position(|r| r.zone == zone && r.name == name && r.rtype == rtype);
            match (at, route) {
                (None, _) => Err(not_found("rrset")),
                (Some(i), Route::GetRrset) => {
                    Ok((200, json!({"rrset": St::rrset_json(&st.rrsets[i])})))
                }
                (Some(i), _) => {
                    st.rrsets.remove(i);
                    let a = st.action("delete_rrset", vec![(zone, "zone")], fails);
                    Ok((200, json!({"action": st.action_by_id(a, true)})))
                }
            }
        }
    };
    out.unwrap_or_else(|e| e)
}

fn pagination(page: usize, per_page: usize, total: usize) -> Value {
    let last = total.div_ceil(per_page).max(1);
    json!({"pagination": {
        "page": page,
        "per_page": per_page,
        "previous_page": if page > 1 { json!(page - 1) } else { Value::Null },
        "next_page": if page < last { json!(page + 1) } else { Value::Null },
        "last_page": last,
        "total_entries": total,
    }})
}

fn create_server(st: &mut St, body: &[u8], fails: bool) -> Result<Reply, Reply> {
    let b = json_body(body)?;
    let string = |field: &str, required: bool| -> Result<Option<String>, Reply> {
        match b.get(field) {
            None | Some(Value::Null) if required => Err(invalid(field, "is required")),
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if required && s.is_empty() => {
                Err(invalid(field, "is required"))
            }
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(invalid(field, "must be a string")),
        }
    };
    let name = string("name", true)?.unwrap_or_default();
    if !valid_hostname(&name) {
        return Err(invalid("name", "must be a valid hostname (RFC 1123)"));
    }
    let server_type = string("server_type", true)?.unwrap_or_default();
    let image = string("image", true)?.unwrap_or_default();
    let location = match string("location", false)? {
        None => &LOCATIONS[0],
        Some(l) => LOCATIONS
            .iter()
            .find(|x| x.name == l)
            .ok_or_else(|| invalid("location", "location not found"))?,
    };
    let user_data = string("user_data", false)?;
    if user_data.as_ref().is_some_and(|u| u.len() > MAX_USER_DATA) {
        return Err(invalid("user_data", "user_data must not exceed 32 KiB"));
    }
    let labels = labels_of(&b)?;
    let start = match b.get("start_after_create") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(v)) => *v,
        Some(_) => return Err(invalid("start_after_create", "must be a boolean")),
    };
    let net = b.get("public_net");
    let enabled = |k: &str| {
        net.and_then(|n| n.get(k))
            .and_then(Value::as_bool)
            .unwrap_or(true)
    };
    let ssh_keys = b
        .get("ssh_keys")
        .and_then(Value::as_array)
        .is_some_and(|k| !k.is_empty());
    if st.servers.values().any(|s| s.name == name) {
        return Err(error_with(
            409,
            "uniqueness_error",
            "server name is already used",
            json!({"fields": [{"name": "name"}]}),
        ));
    }
    let id = st.id();
    let n = st.addresses;
    st.addresses += 1;
    let ipv4 = enabled("enable_ipv4").then(|| {
        let net = ["192.0.2", "198.51.100", "203.0.113"][(n / 254 % 3) as usize];
        format!("{net}.{}", n % 254 + 1)
    });
    let ipv6 = enabled("enable_ipv6").then(|| format!("2001:db8:{:x}::/64", n + 1));
    let create = st.action("create_server", vec![(id, "server")], fails);
    let mut next = Vec::new();
    if start {
        next.push(st.action("start_server", vec![(id, "server")], fails));
    }
    let server = Server {
        id,
        name,
        labels,
        user_data,
        server_type,
        image,
        location,
        ipv4,
        ipv6,
        created: st.wall(),
        start,
        create_action: create,
    };
    let root_password = if ssh_keys {
        Value::Null
    } else {
        json!(format!("fake-root-password-{id}"))
    };
    let mut sj = st.server_json(&server);
    sj["status"] = json!("initializing");
    st.servers.insert(id, server);
    Ok((
        201,
        json!({
            "server": sj,
            "action": st.action_by_id(create, true),
            "next_actions": next.iter().map(|a| st.action_by_id(*a, true)).collect::<Vec<_>>(),
            "root_password": root_password,
        }),
    ))
}

fn list_servers(st: &St, query: Option<&str>) -> Result<Reply, Reply> {
    let q = query_pairs(query);
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let terms = match get("label_selector") {
        None => Vec::new(),
        Some(sel) => parse_selector(sel)
            .ok_or_else(|| invalid("label_selector", "invalid label selector"))?,
    };
    let statuses: Vec<&str> = q
        .iter()
        .filter(|(k, _)| k == "status")
        .map(|(_, v)| v.as_str())
        .collect();
    let number = |k: &str, default: usize| -> Result<usize, Reply> {
        get(k).map_or(Ok(default), |v| {
            v.parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| invalid(k, "must be a positive integer"))
        })
    };
    let page = number("page", 1)?;
    let per_page = number("per_page", 25)?.min(50);
    let matching: Vec<&Server> = st
        .servers
        .values()
        .filter(|s| get("name").is_none_or(|n| n == s.name))
        .filter(|s| selects(&terms, &s.labels))
        .filter(|s| statuses.is_empty() || statuses.contains(&st.status(s)))
        .collect();
    let total = matching.len();
    let list: Vec<Value> = matching
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|s| st.server_json(s))
        .collect();
    Ok((
        200,
        json!({"servers": list, "meta": pagination(page, per_page, total)}),
    ))
}

const RRSET_TYPES: [&str; 16] = [
    "A", "AAAA", "CAA", "CNAME", "DS", "HINFO", "HTTPS", "MX", "NS", "PTR", "RP", "SOA", "SRV",
    "SVCB", "TLSA", "TXT",
];

fn create_rrset(st: &mut St, zone: &str, body: &[u8], fails: bool) -> Result<Reply, Reply> {
    let Some((zone_id, zone_name)) = st.zone(zone).map(|z| (z.id, z.name.clone())) else {
        return Err(not_found("zone"));
    };
    let b = json_body(body)?;
    let name = b
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if name.is_empty()
        || name.ends_with('.')
        || name != name.to_lowercase()
        || (name != "@" && name.ends_with(&zone_name))
        || (name != "@" && !valid_hostname(&name.replace(['_', '*'], "x")))
    {
        return Err(invalid(
            "name",
            "must be lower case, relative to the zone, without a final dot",
        ));
    }
    let rtype = b
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if !RRSET_TYPES.contains(&rtype.as_str()) {
        return Err(invalid("type", "unknown record type"));
    }
    let ttl = match b.get("ttl") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|t| *t >= 60)
                .ok_or_else(|| invalid("ttl", "must be an integer ≥ 60"))?,
        ),
    };
    let mut records = Vec::new();
    for r in b
        .get("records")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let value = r.get("value").and_then(Value::as_str).unwrap_or("");
        let ok = match rtype.as_str() {
            "A" => value.parse::<std::net::Ipv4Addr>().is_ok(),
            "AAAA" => value.parse::<std::net::Ipv6Addr>().is_ok(),
            _ => !value.is_empty(),
        };
        if !ok {
            return Err(invalid(
                "records",
                &format!("invalid {rtype} record value '{value}'"),
            ));
        }
        let comment = r.get("comment").and_then(Value::as_str).unwrap_or("");
        records.push((value.to_owned(), comment.to_owned()));
    }
    if records.is_empty() {
        return Err(invalid("records", "at least one record is required"));
    }
    let labels = labels_of(&b)?;
    if st
        .rrsets
        .iter()
        .any(|r| r.zone == zone_id && r.name == name && r.rtype == rtype)
    {
        return Err(error_with(
            409,
            "uniqueness_error",
            "rrset with this name and type already exists",
            json!({"fields": [{"name": "name"}, {"name": "type"}]}),
        ));
    }
    let rrset = Rrset {
        zone: zone_id,
        name,
        rtype,
        ttl,
        records,
        labels,
    };
    let rj = St::rrset_json(&rrset);
    st.rrsets.push(rrset);
    let a = st.action("create_rrset", vec![(zone_id, "zone")], fails);
    Ok((
        201,
        json!({"rrset": rj, "action": st.action_by_id(a, true)}),
    ))
}

enum Step {
    Reply(Reply),
    Limited(u64),
    Hang,
    Drop,
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    Extension(conn): Extension<Conn>,
    req: Request,
) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let expected = format!("Bearer {}", shared.token);
    let authorized = req
        .headers()
        .get(header::AUTHORIZATION)
        .is_some_and(|v| v.as_bytes() == expected.as_bytes());
    let body = axum::body::to_bytes(req.into_body(), 4 << 20).await;
    let classified = classify(&method, &path);
    let (idx, step, limits, hang) = {
        let mut st = shared.lock();
        let (now, wall) = (st.now(), st.wall());
        let idx = st.log.len();
        st.log.push(Logged {
            method: method.to_string(),
            path: path.clone(),
            query: query.clone(),
            route: classified.as_ref().map(|(r, _)| *r),
            at: wall,
            status: None,
        });
        let step = if !authorized {
            Step::Reply(error(401, "unauthorized", "unable to authenticate"))
        } else if !st.bucket.take(now) {
            Step::Reply(error(
                429,
                "rate_limit_exceeded",
                "limit of requests per hour reached",
            ))
        } else if let Some((route, segs)) = classified {
            let fault = st.faults.get_mut(&route).and_then(VecDeque::pop_front);
            match (fault, body) {
                (Some(Fault::Status(code, name)), _) => {
                    Step::Reply(error(code, name, "scripted failure"))
                }
                (Some(Fault::RateLimited { reset_in_secs }), _) => {
                    Step::Limited(unix(wall) + reset_in_secs)
                }
                (Some(Fault::Locked), _) => Step::Reply(error(
                    423,
                    "locked",
                    "The item you are trying to access is locked (an action is running)",
                )),
                (Some(Fault::Timeout), _) => Step::Hang,
                (Some(Fault::Drop), _) => Step::Drop,
                (_, Err(_)) => Step::Reply(error(400, "invalid_input", "request body too large")),
                (Some(Fault::CreateThenFail), Ok(b)) => {
                    dispatch(&mut st, route, &segs, query.as_deref(), &b, false);
                    Step::Reply(error(
                        500,
                        "server_error",
                        "Error while processing the request",
                    ))
                }
                (f, Ok(b)) => Step::Reply(dispatch(
                    &mut st,
                    route,
                    &segs,
                    query.as_deref(),
                    &b,
                    f == Some(Fault::ActionFails),
                )),
            }
        } else {
            Step::Reply(not_found("resource"))
        };
        (idx, step, st.bucket.headers(wall), st.hang)
    };
    let (limit, mut remaining, mut reset) = limits;
    let (status, value) = match step {
        Step::Reply(r) => r,
        Step::Limited(at) => {
            (remaining, reset) = (0, at);
            error(
                429,
                "rate_limit_exceeded",
                "limit of requests per hour reached",
            )
        }
        Step::Hang => {
            tokio::time::sleep(hang).await;
            error(504, "timeout", "The request timed out")
        }
        Step::Drop => {
            conn.0.notify_one();
            return std::future::pending::<Response>().await;
        }
    };
    if let Some(entry) = shared.lock().log.get_mut(idx) {
        entry.status = Some(status);
    }
    let mut resp = Response::new(Body::from(value.to_string()));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert("ratelimit-limit", HeaderValue::from(limit));
    h.insert("ratelimit-remaining", HeaderValue::from(remaining));
    h.insert("ratelimit-reset", HeaderValue::from(reset));
    resp
}

impl FakeHetzner {
    /// Serves on `listener` (bound by the caller, so there is no race for the port); requests
    /// must carry `Authorization: Bearer {token}`. Must be called inside a Tokio runtime.
    pub fn serve(listener: tokio::net::TcpListener, token: &str) -> std::io::Result<FakeHetzner> {
        let url = format!("http://{}/v1", listener.local_addr()?);
        let now = Instant::now();
        let shared = Arc::new(Shared {
            token: token.to_owned(),
            state: Mutex::new(St {
                offset: Duration::ZERO,
                action_delay: Duration::ZERO,
                hang: Duration::from_secs(120),
                bucket: Bucket {
                    limit: 3600,
                    window: Duration::from_secs(3600),
                    tokens: 3600.0,
                    at: now,
                },
                faults: HashMap::new(),
                servers: BTreeMap::new(),
                actions: BTreeMap::new(),
                zones: Vec::new(),
                rrsets: Vec::new(),
                log: Vec::new(),
                next_id: 1000,
                addresses: 0,
                deleted_servers: 0,
            }),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let close = Arc::new(Notify::new());
                let app = app.clone().layer(Extension(Conn(close.clone())));
                tokio::spawn(async move {
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service);
                    // Dropping the connection closes the socket without an answer.
                    tokio::select! {
                        _ = conn => {}
                        () = close.notified() => {}
                    }
                });
            }
        });
        Ok(FakeHetzner { url, shared })
    }

    /// The API endpoint, `http://127.0.0.1:PORT/v1` (what `https://api.hetzner.cloud/v1` is
    /// for the real one): a server is `{url}/servers/{id}`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Adds a DNS zone (primary mode) for RRSets; returns its id.
    pub fn add_zone(&self, name: &str) -> u64 {
        let mut st = self.shared.lock();
        let id = st.id();
        st.zones.push(Zone {
            id,
            name: name.to_owned(),
        });
        id
    }

    /// Queues `fault` for the next request of kind `route` (faults of a route play in order).
    pub fn fail_next(&self, route: Route, fault: Fault) {
        self.shared
            .lock()
            .faults
            .entry(route)
            .or_default()
            .push_back(fault);
    }

    /// How long actions created from now on stay `running` (default: zero, done at once).
    pub fn set_action_delay(&self, delay: Duration) {
        self.shared.lock().action_delay = delay;
    }

    /// How long [`Fault::Timeout`] holds a request (default 120 s).
    pub fn set_hang(&self, hang: Duration) {
        self.shared.lock().hang = hang;
    }

    /// `limit` requests, refilled evenly over `window` (default 3600 per hour); the bucket
    /// starts full.
    pub fn set_rate_limit(&self, limit: u32, window: Duration) {
        let mut st = self.shared.lock();
        let now = st.now();
        st.bucket = Bucket {
            limit,
            window,
            tokens: f64::from(limit),
            at: now,
        };
    }

    /// Moves the fake's clock forward (actions, rate limit, timestamps).
    pub fn advance(&self, by: Duration) {
        self.shared.lock().offset += by;
    }

    /// Ends every running action now (as it was told: success, or error for
    /// [`Fault::ActionFails`]).
    pub fn finish_actions(&self) {
        let mut st = self.shared.lock();
        let now = st.now();
        for a in st.actions.values_mut() {
            if now < a.at + a.delay {
                a.delay = now.saturating_duration_since(a.at);
            }
        }
    }

    /// The servers that exist, by id.
    pub fn servers(&self) -> Vec<ServerInfo> {
        let st = self.shared.lock();
        st.servers
            .values()
            .map(|s| ServerInfo {
                id: s.id,
                name: s.name.clone(),
                labels: s.labels.clone(),
                status: st.status(s).to_owned(),
                user_data: s.user_data.clone(),
                server_type: s.server_type.clone(),
                image: s.image.clone(),
                location: s.location.name.to_owned(),
                ipv4: s.ipv4.clone(),
                ipv6: s.ipv6.clone(),
            })
            .collect()
    }

    /// The RRSets that exist, in creation order.
    pub fn rrsets(&self) -> Vec<RrsetInfo> {
        let st = self.shared.lock();
        st.rrsets
            .iter()
            .map(|r| RrsetInfo {
                zone: st
                    .zones
                    .iter()
                    .find(|z| z.id == r.zone)
                    .map(|z| z.name.clone())
                    .unwrap_or_default(),
                name: r.name.clone(),
                rtype: r.rtype.clone(),
                ttl: r.ttl,
                records: r.records.iter().map(|(v, _)| v.clone()).collect(),
                labels: r.labels.clone(),
            })
            .collect()
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<Logged> {
        self.shared.lock().log.clone()
    }

    /// How many requests of kind `route` were received (whatever their answer).
    pub fn count(&self, route: Route) -> usize {
        self.shared
            .lock()
            .log
            .iter()
            .filter(|l| l.route == Some(route))
            .count()
    }

    /// How many servers were deleted.
    pub fn delete_count(&self) -> usize {
        self.shared.lock().deleted_servers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let at = |s: u64| rfc3339(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00+00:00");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00+00:00");
        assert_eq!(at(1_454_197_500), "2016-01-30T23:45:00+00:00");
        assert_eq!(at(1_709_164_800), "2024-02-29T00:00:00+00:00");
        assert_eq!(at(4_102_444_799), "2099-12-31T23:59:59+00:00");
    }

    #[test]
    fn label_selectors() {
        let labels: BTreeMap<String, String> = [("a", "1"), ("b", "2")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into();
        let sel = |s: &str| selects(&parse_selector(s).unwrap_or_default(), &labels);
        assert!(sel("a=1"));
        assert!(sel("a==1,b"));
        assert!(sel("a!=2,!c"));
        assert!(sel("b in (1,2), a notin (3)"));
        assert!(!sel("a=2"));
        assert!(!sel("c"));
        assert!(!sel("!a"));
        assert!(!sel("a in (2,3)"));
        assert!(parse_selector("a in 1").is_none());
        assert!(parse_selector("=1").is_none());
    }
}

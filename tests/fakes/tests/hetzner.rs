//! The fake Hetzner Cloud API: servers, actions, zone RRSets, errors, rate limit and the
//! scripted faults, over real HTTP with reqwest.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use fakes::hetzner::{FakeHetzner, Fault, MAX_USER_DATA, Route};
use serde_json::{Value, json};

const TOKEN: &str = "hcloud-test-token";

async fn fake() -> FakeHetzner {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    FakeHetzner::serve(listener, TOKEN).unwrap()
}

struct Client {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Client {
    fn new(fake: &FakeHetzner) -> Client {
        Client {
            http: reqwest::Client::new(),
            url: fake.url(),
            token: TOKEN.to_owned(),
        }
    }
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Result<reqwest::Response> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(2));
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await
    }
    /// Status and JSON body.
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let resp = self.send(method, path, body).await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }
    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
    async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::DELETE, path, None).await
    }
}

fn server_body(name: &str) -> Value {
    json!({
        "name": name,
        "server_type": "cx22",
        "image": "ubuntu-24.04",
        "location": "nbg1",
        "user_data": "#cloud-config\nruncmd: [echo hi]\n",
        "labels": {"order": "o-1", "tenant": "acme"},
        "start_after_create": true,
        "public_net": {"enable_ipv4": true, "enable_ipv6": true},
        "ssh_keys": ["hub"],
    })
}

fn error_code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn create_server_answers_201_with_the_documented_shape() {
    let fake = fake().await;
    let c = Client::new(&fake);
    let (status, v) = c.post("/servers", server_body("tenant-1")).await;
    assert_eq!(status, 201, "{v}");
    let s = &v["server"];
    assert!(s["id"].as_u64().is_some());
    assert_eq!(s["name"], "tenant-1");
    assert_eq!(s["status"], "initializing");
    assert!(s["created"].as_str().unwrap().ends_with("+00:00"));
    assert_eq!(s["labels"], json!({"order": "o-1", "tenant": "acme"}));
    assert!(
        s["public_net"]["ipv4"]["ip"]
            .as_str()
            .unwrap()
            .parse::<std::net::Ipv4Addr>()
            .is_ok()
    );
    assert!(
        s["public_net"]["ipv6"]["ip"]
            .as_str()
            .unwrap()
            .ends_with("::/64")
    );
    assert_eq!(s["server_type"]["name"], "cx22");
    assert_eq!(s["datacenter"]["location"]["name"], "nbg1");
    let a = &v["action"];
    assert_eq!(a["command"], "create_server");
    assert_eq!(a["status"], "running");
    assert_eq!(a["progress"], 0);
    assert!(a["started"].is_string());
    assert!(a["finished"].is_null());
    assert!(a["error"].is_null());
    assert_eq!(a["resources"], json!([{"id": s["id"], "type": "server"}]));
    assert_eq!(v["next_actions"][0]["command"], "start_server");
    assert!(v["root_password"].is_null());

    let servers = fake.servers();
    assert_eq!(servers.len(), 1);
    assert_eq!(servers[0].name, "tenant-1");
    assert_eq!(
        servers[0].user_data.as_deref(),
        Some("#cloud-config\nruncmd: [echo hi]\n")
    );
    assert_eq!(servers[0].labels["order"], "o-1");
    assert_eq!(fake.count(Route::CreateServer), 1);

    let (status, got) = c.get(&format!("/servers/{}", s["id"])).await;
    assert_eq!(status, 200);
    assert_eq!(got["server"]["name"], "tenant-1");
}

#[tokio::test]
async fn duplicate_name_is_a_uniqueness_error() {
    let fake = fake().await;
    let c = Client::new(&fake);
    assert_eq!(c.post("/servers", server_body("dup")).await.0, 201);
    let (status, v) = c.post("/servers", server_body("dup")).await;
    assert_eq!(status, 409);
    assert_eq!(error_code(&v), "uniqueness_error");
    assert!(v["error"]["message"].is_string());
    assert_eq!(v["error"]["details"]["fields"][0]["name"], "name");
    assert_eq!(fake.servers().len(), 1);
}

#[tokio::test]
async fn invalid_input_is_refused() {
    let fake = fake().await;
    let c = Client::new(&fake);
    let mut body = server_body("big");
    body["user_data"] = json!("x".repeat(MAX_USER_DATA + 1));
    let (status, v) = c.post("/servers", body).await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&v), "invalid_input");
    assert_eq!(v["error"]["details"]["fields"][0]["name"], "user_data");

    let mut body = server_body("fits");
    body["user_data"] = json!("x".repeat(MAX_USER_DATA));
    assert_eq!(c.post("/servers", body).await.0, 201);

    for bad in ["under_score", "-dash", ""] {
        let (status, v) = c.post("/servers", server_body(bad)).await;
        assert_eq!((status, error_code(&v)), (400, "invalid_input"), "{bad}");
    }
    let (status, v) = c
        .post("/servers", json!({"name": "x", "image": "ubuntu-24.04"}))
        .await;
    assert_eq!((status, error_code(&v)), (400, "invalid_input"));
    let resp = c
        .http
        .post(format!("{}/servers", c.url))
        .bearer_auth(TOKEN)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(error_code(&resp.json().await.unwrap()), "json_error");
    assert_eq!(fake.servers().len(), 1);
}

#[tokio::test]
async fn label_selector_and_name_find_servers() {
    let fake = fake().await;
    let c = Client::new(&fake);
    c.post("/servers", server_body("a")).await;
    let mut b = server_body("b");
    b["labels"] = json!({"order": "o-2", "tenant": "acme"});
    c.post("/servers", b).await;

    let (status, v) = c.get("/servers?label_selector=order%3Do-2").await;
    assert_eq!(status, 200);
    let names: Vec<_> = v["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["b"]);
    assert_eq!(v["meta"]["pagination"]["total_entries"], 1);

    let (_, v) = c
        .get("/servers?label_selector=tenant=acme,order!=o-2")
        .await;
    assert_eq!(v["servers"].as_array().unwrap().len(), 1);
    assert_eq!(v["servers"][0]["name"], "a");
    let (_, v) = c
        .get("/servers?label_selector=order%20in%20(o-1,o-2)")
        .await;
    assert_eq!(v["servers"].as_array().unwrap().len(), 2);
    let (_, v) = c.get("/servers?label_selector=order=none").await;
    assert_eq!(v["servers"], json!([]));
    let (_, v) = c.get("/servers?name=a").await;
    assert_eq!(v["servers"].as_array().unwrap().len(), 1);
    let (_, v) = c.get("/servers?per_page=1&page=2").await;
    assert_eq!(v["servers"][0]["name"], "b");
    assert_eq!(v["meta"]["pagination"]["previous_page"], 1);
    assert!(v["meta"]["pagination"]["next_page"].is_null());
}

#[tokio::test]
async fn actions_succeed_after_the_delay_and_the_server_runs() {
    let fake = fake().await;
    fake.set_action_delay(Duration::from_secs(30));
    let c = Client::new(&fake);
    let (_, v) = c.post("/servers", server_body("slow")).await;
    let (id, action) = (&v["server"]["id"], &v["action"]["id"]);

    let (status, a) = c.get(&format!("/actions/{action}")).await;
    assert_eq!(status, 200);
    assert_eq!(a["action"]["status"], "running");
    assert_eq!(
        c.get(&format!("/servers/{id}")).await.1["server"]["status"],
        "initializing"
    );

    fake.advance(Duration::from_secs(15));
    let (_, a) = c.get(&format!("/actions/{action}")).await;
    assert_eq!(a["action"]["status"], "running");
    let p = a["action"]["progress"].as_u64().unwrap();
    assert!((40..=60).contains(&p), "{p}");

    fake.advance(Duration::from_secs(16));
    let (_, a) = c.get(&format!("/actions/{action}")).await;
    assert_eq!(a["action"]["status"], "success");
    assert_eq!(a["action"]["progress"], 100);
    assert!(a["action"]["finished"].is_string());
    assert_eq!(
        c.get(&format!("/servers/{id}")).await.1["server"]["status"],
        "running"
    );
    assert_eq!(fake.servers()[0].status, "running");

    // Real time too, and the test can end every running action.
    fake.set_action_delay(Duration::from_millis(200));
    let (_, v) = c.post("/servers", server_body("real-time")).await;
    let action = &v["action"]["id"];
    // Wait on the action itself (it finishes on the wall clock, after its delay).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = c.get(&format!("/actions/{action}")).await.1["action"]["status"].clone();
        if status == "success" {
            break;
        }
        assert_eq!(status, "running");
        assert!(
            std::time::Instant::now() < deadline,
            "the action never finished"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fake.set_action_delay(Duration::from_secs(3600));
    let (_, v) = c.post("/servers", server_body("forced")).await;
    fake.finish_actions();
    let (_, a) = c
        .get(&format!("/servers/actions/{}", v["action"]["id"]))
        .await;
    assert_eq!(a["action"]["status"], "success");

    assert_eq!(c.get("/actions/1").await.0, 404);
}

#[tokio::test]
async fn delete_server() {
    let fake = fake().await;
    let c = Client::new(&fake);
    let (_, v) = c.post("/servers", server_body("gone")).await;
    let id = &v["server"]["id"];
    let (status, v) = c.delete(&format!("/servers/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(v["action"]["command"], "delete_server");
    assert_eq!(v["action"]["resources"][0]["id"], *id);
    let (status, v) = c.get(&format!("/servers/{id}")).await;
    assert_eq!((status, error_code(&v)), (404, "not_found"));
    let (status, v) = c.delete(&format!("/servers/{id}")).await;
    assert_eq!((status, error_code(&v)), (404, "not_found"));
    assert_eq!(fake.delete_count(), 1);
    assert!(fake.servers().is_empty());
    // The name is free again.
    assert_eq!(c.post("/servers", server_body("gone")).await.0, 201);
}

#[tokio::test]
async fn rrsets_create_get_delete() {
    let fake = fake().await;
    let zone = fake.add_zone("example.com");
    let c = Client::new(&fake);
    let body = json!({
        "name": "t1", "type": "A", "ttl": 300,
        "records": [{"value": "192.0.2.1", "comment": "tenant 1"}],
        "labels": {"order": "o-1"},
    });
    let (status, v) = c.post("/zones/example.com/rrsets", body.clone()).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(
        v["rrset"],
        json!({
            "id": "t1/A", "name": "t1", "type": "A", "ttl": 300, "labels": {"order": "o-1"},
            "protection": {"change": false},
            "records": [{"value": "192.0.2.1", "comment": "tenant 1"}], "zone": zone,
        })
    );
    assert_eq!(v["action"]["command"], "create_rrset");
    let (status, v) = c.post("/zones/example.com/rrsets", body.clone()).await;
    assert_eq!((status, error_code(&v)), (409, "uniqueness_error"));
    let (status, v) = c.post("/zones/example.org/rrsets", body).await;
    assert_eq!((status, error_code(&v)), (404, "not_found"));
    let six = json!({"name": "t1", "type": "AAAA", "records": [{"value": "2001:db8::1"}]});
    let (status, v) = c.post(&format!("/zones/{zone}/rrsets"), six).await;
    assert_eq!(status, 201);
    assert!(v["rrset"]["ttl"].is_null());
    assert_eq!(v["rrset"]["records"][0]["comment"], "");
    let bad = json!({"name": "t2", "type": "A", "records": [{"value": "2001:db8::1"}]});
    let (status, v) = c.post("/zones/example.com/rrsets", bad).await;
    assert_eq!((status, error_code(&v)), (400, "invalid_input"));

    let (status, v) = c.get("/zones/example.com/rrsets/t1/A").await;
    assert_eq!(status, 200);
    assert_eq!(v["rrset"]["records"][0]["value"], "192.0.2.1");
    assert_eq!(
        c.get("/zones/example.com/rrsets").await.1["rrsets"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let rr = fake.rrsets();
    assert_eq!(rr.len(), 2);
    assert_eq!(
        (rr[0].zone.as_str(), rr[0].rtype.as_str()),
        ("example.com", "A")
    );
    assert_eq!(rr[0].records, ["192.0.2.1"]);

    let (status, v) = c.delete("/zones/example.com/rrsets/t1/A").await;
    assert_eq!(status, 200);
    assert_eq!(v["action"]["command"], "delete_rrset");
    let (status, v) = c.get("/zones/example.com/rrsets/t1/A").await;
    assert_eq!((status, error_code(&v)), (404, "not_found"));
    assert_eq!(fake.rrsets().len(), 1);
}

#[tokio::test]
async fn wrong_or_missing_token_is_401() {
    let fake = fake().await;
    let mut c = Client::new(&fake);
    c.token = "wrong".to_owned();
    let (status, v) = c.post("/servers", server_body("x")).await;
    assert_eq!((status, error_code(&v)), (401, "unauthorized"));
    let resp = reqwest::get(format!("{}/servers", fake.url()))
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().contains_key("ratelimit-limit"));
    assert!(fake.servers().is_empty());
    assert_eq!(fake.requests().len(), 2);
    assert_eq!(fake.requests()[1].status, Some(401));
}

#[tokio::test]
async fn rate_limit_answers_429_with_headers() {
    let fake = fake().await;
    let c = Client::new(&fake);
    let resp = c
        .send(reqwest::Method::GET, "/servers", None)
        .await
        .unwrap();
    let h = resp.headers();
    assert_eq!(h["ratelimit-limit"], "3600");
    assert_eq!(h["ratelimit-remaining"], "3599");
    let reset: u64 = h["ratelimit-reset"].to_str().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(reset >= now && reset <= now + 2, "{reset} vs {now}");

    fake.set_rate_limit(2, Duration::from_secs(60));
    for remaining in ["1", "0"] {
        let resp = c
            .send(reqwest::Method::GET, "/servers", None)
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["ratelimit-remaining"], remaining);
    }
    let resp = c
        .send(reqwest::Method::GET, "/servers", None)
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["ratelimit-limit"], "2");
    assert_eq!(resp.headers()["ratelimit-remaining"], "0");
    let reset: u64 = resp.headers()["ratelimit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(reset >= now + 59, "{reset}");
    assert_eq!(
        error_code(&resp.json().await.unwrap()),
        "rate_limit_exceeded"
    );
    // One request comes back every window / limit.
    fake.advance(Duration::from_secs(30));
    assert_eq!(c.get("/servers").await.0, 200);
    assert_eq!(c.get("/servers").await.0, 429);
}

#[tokio::test]
async fn scripted_status_rate_limited_and_locked() {
    let fake = fake().await;
    let c = Client::new(&fake);
    fake.fail_next(Route::CreateServer, Fault::Status(503, "unavailable"));
    fake.fail_next(Route::CreateServer, Fault::RateLimited { reset_in_secs: 7 });
    fake.fail_next(Route::DeleteServer, Fault::Locked);

    let (status, v) = c.post("/servers", server_body("s")).await;
    assert_eq!((status, error_code(&v)), (503, "unavailable"));
    let resp = c
        .send(reqwest::Method::POST, "/servers", Some(server_body("s")))
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["ratelimit-remaining"], "0");
    let reset: u64 = resp.headers()["ratelimit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!((now + 6..=now + 8).contains(&reset));
    assert_eq!(
        error_code(&resp.json().await.unwrap()),
        "rate_limit_exceeded"
    );
    assert!(fake.servers().is_empty());

    let (status, v) = c.post("/servers", server_body("s")).await;
    assert_eq!(status, 201);
    let id = &v["server"]["id"];
    let (status, v) = c.delete(&format!("/servers/{id}")).await;
    assert_eq!((status, error_code(&v)), (423, "locked"));
    assert_eq!(fake.servers().len(), 1);
    assert_eq!(c.delete(&format!("/servers/{id}")).await.0, 200);
    assert_eq!(fake.count(Route::CreateServer), 3);
    assert_eq!(fake.count(Route::DeleteServer), 2);
}

#[tokio::test]
async fn timeout_and_drop_create_nothing() {
    let fake = fake().await;
    let c = Client::new(&fake);
    fake.fail_next(Route::CreateServer, Fault::Timeout);
    let err = c
        .send(reqwest::Method::POST, "/servers", Some(server_body("t")))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");

    fake.set_hang(Duration::from_millis(100));
    fake.fail_next(Route::GetServer, Fault::Timeout);
    let (status, v) = c.get("/servers/1").await;
    assert_eq!((status, error_code(&v)), (504, "timeout"));

    fake.fail_next(Route::CreateServer, Fault::Drop);
    let err = c
        .send(reqwest::Method::POST, "/servers", Some(server_body("t")))
        .await
        .unwrap_err();
    assert!(!err.is_timeout(), "{err}");
    assert!(fake.servers().is_empty());
    assert_eq!(c.post("/servers", server_body("t")).await.0, 201);
    let log = fake.requests();
    assert_eq!(log[2].route, Some(Route::CreateServer));
    assert_eq!(log[2].status, None);
}

#[tokio::test]
async fn create_then_fail_leaves_a_server_found_by_label() {
    let fake = fake().await;
    let zone = fake.add_zone("example.com");
    let c = Client::new(&fake);
    fake.fail_next(Route::CreateServer, Fault::CreateThenFail);
    let (status, v) = c.post("/servers", server_body("crash")).await;
    assert_eq!((status, error_code(&v)), (500, "server_error"));
    assert_eq!(fake.servers().len(), 1);
    // The client recovers by label look-up, and a retry is a uniqueness error.
    let (_, v) = c.get("/servers?label_selector=order=o-1").await;
    assert_eq!(v["servers"][0]["name"], "crash");
    assert_eq!(c.post("/servers", server_body("crash")).await.0, 409);

    fake.fail_next(Route::CreateRrset, Fault::CreateThenFail);
    let rr = json!({"name": "crash", "type": "A", "records": [{"value": "192.0.2.9"}]});
    let (status, _) = c.post(&format!("/zones/{zone}/rrsets"), rr).await;
    assert_eq!(status, 500);
    assert_eq!(fake.rrsets().len(), 1);
}

#[tokio::test]
async fn action_fails_leaves_the_server_off() {
    let fake = fake().await;
    let c = Client::new(&fake);
    fake.set_action_delay(Duration::from_secs(10));
    fake.fail_next(Route::CreateServer, Fault::ActionFails);
    let (status, v) = c.post("/servers", server_body("broken")).await;
    assert_eq!(status, 201);
    assert_eq!(v["action"]["status"], "running");
    fake.advance(Duration::from_secs(10));
    let (_, a) = c.get(&format!("/actions/{}", v["action"]["id"])).await;
    assert_eq!(a["action"]["status"], "error");
    assert_eq!(a["action"]["error"]["code"], "action_failed");
    assert_eq!(fake.servers()[0].status, "off");
}

#[tokio::test]
async fn unknown_paths_are_not_found_and_logged() {
    let fake = fake().await;
    let c = Client::new(&fake);
    let (status, v) = c.get("/volumes").await;
    assert_eq!((status, error_code(&v)), (404, "not_found"));
    let log = fake.requests();
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].method.as_str(), log[0].path.as_str()),
        ("GET", "/v1/volumes")
    );
    assert_eq!(log[0].route, None);
    assert_eq!(log[0].status, Some(404));
}

//! ARM semantics of armsim over real HTTP(S), driven with reqwest.

use armsim::{
    FaultAction, FaultRule, Fixture, LroConfig, OtherWriter, OtherWriterAction, SimConfig,
    ThrottleConfig,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

const SUB: &str = "00000000-1111-2222-3333-444444444444";
const RG: &str = "rg-poolnet-demo";
const API: &str = "api-version=2024-03-01";

fn demo(config: SimConfig) -> armsim::RunningSim {
    let config = SimConfig {
        seed: Some(Fixture::aks_demo().expect("demo fixture parses")),
        ..config
    };
    armsim::start(config, "127.0.0.1:0".parse().unwrap()).expect("armsim starts")
}

fn client(sim: &armsim::RunningSim) -> reqwest::Client {
    let mut b = reqwest::Client::builder().use_rustls_tls();
    if let Some(pem) = sim.ca_pem() {
        b = b.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

fn nsg_url(sim: &armsim::RunningSim, rg: &str, name: &str) -> String {
    format!(
        "{}/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Network/networkSecurityGroups/{name}?{API}",
        sim.base_url()
    )
}

fn rule(name: &str, priority: u32, port: &str) -> Value {
    json!({"name": name, "properties": {
        "priority": priority, "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
        "sourceAddressPrefix": "*", "sourcePortRange": "*",
        "destinationAddressPrefix": "*", "destinationPortRange": port}})
}

async fn send(
    c: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut req = c.request(method, url).bearer_auth("t");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().await.expect("request is answered");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, headers, body)
}

async fn wait_op(c: &reqwest::Client, url: &str) -> Value {
    for _ in 0..200 {
        let (_, _, body) = send(c, reqwest::Method::GET, url, None, &[]).await;
        if body["status"] != "InProgress" {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("operation {url} never finished")
}

#[tokio::test]
async fn https_put_is_a_long_running_operation_with_etags() {
    let sim = demo(SimConfig {
        tls: true,
        ..SimConfig::default()
    });
    assert!(sim.base_url().starts_with("https://127.0.0.1:"));
    let c = client(&sim);
    let url = nsg_url(&sim, RG, "nsg-test");
    let (status, headers, body) = send(&c, reqwest::Method::PUT, &url, Some(json!({"location": "westeurope", "properties": {"securityRules": [rule("a", 100, "80")]}})), &[]).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["properties"]["provisioningState"], "Updating");
    assert_eq!(
        body["properties"]["defaultSecurityRules"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    let etag1 = body["etag"].as_str().unwrap().to_string();
    assert!(etag1.starts_with("W/\""));
    assert_eq!(body["properties"]["securityRules"][0]["etag"], etag1);
    let op = headers["azure-asyncoperation"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(headers.contains_key("retry-after"));
    assert!(headers.contains_key("x-ms-ratelimit-remaining-subscription-writes"));
    assert_eq!(wait_op(&c, &op).await["status"], "Succeeded");
    let (_, _, got) = send(&c, reqwest::Method::GET, &url, None, &[]).await;
    assert_eq!(got["properties"]["provisioningState"], "Succeeded");

    // Replace with the right ETag: 200 and a new ETag; then the old one is stale.
    let (status, _, body) = send(
        &c,
        reqwest::Method::PUT,
        &url,
        Some(json!({"location": "westeurope"})),
        &[("If-Match", &etag1)],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(body["etag"], etag1);
    let (status, _, body) = send(
        &c,
        reqwest::Method::PUT,
        &url,
        Some(json!({"location": "westeurope"})),
        &[("If-Match", &etag1)],
    )
    .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(body["error"]["code"], "PreconditionFailed");
    let (status, _, _) = send(
        &c,
        reqwest::Method::PUT,
        &url,
        Some(json!({"location": "westeurope"})),
        &[("If-None-Match", "*")],
    )
    .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);

    let (status, headers, _) = send(&c, reqwest::Method::DELETE, &url, None, &[]).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(headers.contains_key("location"));
    wait_op(&c, headers["azure-asyncoperation"].to_str().unwrap()).await;
    let (status, _, body) = send(&c, reqwest::Method::GET, &url, None, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "ResourceNotFound");
    let (status, _, _) = send(&c, reqwest::Method::DELETE, &url, None, &[]).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let counters = sim.counters();
    assert_eq!(
        counters.get("PUT", "Microsoft.Network/networkSecurityGroups"),
        4
    );
    assert_eq!(
        counters.get("DELETE", "Microsoft.Network/networkSecurityGroups"),
        2
    );
    // Accepted writes of this NSG: the create, the replace and both deletes (not the 412s).
    let id = format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/networkSecurityGroups/NSG-TEST"
    );
    assert_eq!(counters.accepted_writes_of(&id), 4, "{counters:#?}");
    assert_eq!(counters.accepted_writes_by_resource.len(), 1);
}

#[tokio::test]
async fn newer_put_cancels_the_running_operation() {
    let sim = demo(SimConfig {
        lro: LroConfig {
            network_ms: 2_000,
            ..LroConfig::default()
        },
        ..SimConfig::default()
    });
    let c = client(&sim);
    let url = nsg_url(&sim, RG, "nsg-slow");
    let (_, h1, _) = send(
        &c,
        reqwest::Method::PUT,
        &url,
        Some(json!({"location": "westeurope"})),
        &[],
    )
    .await;
    let (_, h2, b2) = send(
        &c,
        reqwest::Method::PUT,
        &url,
        Some(json!({"location": "westeurope", "tags": {"v": "2"}})),
        &[],
    )
    .await;
    assert_eq!(b2["properties"]["provisioningState"], "Updating");
    let (_, _, first) = send(
        &c,
        reqwest::Method::GET,
        h1["azure-asyncoperation"].to_str().unwrap(),
        None,
        &[],
    )
    .await;
    assert_eq!(first["status"], "Canceled");
    assert_eq!(
        first["error"]["code"],
        "CanceledAndSupersededDueToAnotherOperation"
    );
    let (_, _, second) = send(
        &c,
        reqwest::Method::GET,
        h2["azure-asyncoperation"].to_str().unwrap(),
        None,
        &[],
    )
    .await;
    assert_eq!(second["status"], "InProgress");
    // A child write while the parent is still updating is refused as retryable.
    let rule_url = url.replace("?", "/securityRules/r1?");
    let (status, headers, body) = send(
        &c,
        reqwest::Method::PUT,
        &rule_url,
        Some(rule("r1", 100, "80")),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["error"]["code"], "RetryableErrorDueToAnotherOperation");
    assert!(headers.contains_key("retry-after"));
}

#[tokio::test]
async fn write_bucket_throttles_per_subscription() {
    let sim = demo(SimConfig {
        throttling: ThrottleConfig {
            write_capacity: 2,
            write_refill_per_sec: 0.1,
            ..ThrottleConfig::default()
        },
        lro: LroConfig {
            network_ms: 0,
            ..LroConfig::default()
        },
        ..SimConfig::default()
    });
    let c = client(&sim);
    let url = nsg_url(&sim, RG, "nsg-t");
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..3 {
        let (s, h, b) = send(
            &c,
            reqwest::Method::PUT,
            &url,
            Some(json!({"location": "westeurope"})),
            &[],
        )
        .await;
        statuses.push(s.as_u16());
        last = Some((h, b));
    }
    assert_eq!(statuses, vec![201, 200, 429]);
    let (h, b) = last.unwrap();
    assert_eq!(b["error"]["code"], "SubscriptionRequestsThrottled");
    assert!(h["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    // Reads have their own bucket.
    let (s, h, _) = send(&c, reqwest::Method::GET, &url, None, &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert!(h.contains_key("x-ms-ratelimit-remaining-subscription-reads"));
    assert_eq!(sim.counters().throttled, 1);
}

#[tokio::test]
async fn faults_drop_error_and_fail_operations() {
    let sim = demo(SimConfig {
        lro: LroConfig {
            network_ms: 0,
            ..LroConfig::default()
        },
        ..SimConfig::default()
    });
    let c = client(&sim);
    let url = nsg_url(&sim, RG, "nsg-snet-aks");
    sim.faults()
        .add_rule(FaultRule::new(FaultAction::Drop).method("GET").count(1));
    assert!(c.get(&url).bearer_auth("t").send().await.is_err());
    sim.faults().add_rule(
        FaultRule::new(FaultAction::Error {
            status: 503,
            code: "ServiceUnavailable".into(),
            message: None,
        })
        .method("GET")
        .count(1),
    );
    let (s, _, b) = send(&c, reqwest::Method::GET, &url, None, &[]).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(b["error"]["code"], "ServiceUnavailable");
    let (s, _, _) = send(&c, reqwest::Method::GET, &url, None, &[]).await;
    assert_eq!(s, StatusCode::OK);

    sim.faults().add_rule(
        FaultRule::new(FaultAction::FailOperation {
            code: "InternalServerError".into(),
            message: None,
        })
        .method("PUT")
        .count(1),
    );
    let other = nsg_url(&sim, RG, "nsg-f");
    let (s, h, _) = send(
        &c,
        reqwest::Method::PUT,
        &other,
        Some(json!({"location": "westeurope"})),
        &[],
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let op = wait_op(&c, h["azure-asyncoperation"].to_str().unwrap()).await;
    assert_eq!(op["status"], "Failed");
    assert_eq!(op["error"]["code"], "InternalServerError");
    let (_, _, got) = send(&c, reqwest::Method::GET, &other, None, &[]).await;
    assert_eq!(got["properties"]["provisioningState"], "Failed");

    let counters = sim.counters();
    assert_eq!(counters.dropped_connections, 1);
    assert_eq!(counters.faults_injected, 3);
    assert_eq!(
        sim.faults()
            .config()
            .rules
            .iter()
            .map(|r| r.injected)
            .sum::<u64>(),
        3
    );
}

#[tokio::test]
async fn other_writer_moves_the_etag_between_get_and_put() {
    let sim = demo(SimConfig {
        lro: LroConfig {
            network_ms: 0,
            ..LroConfig::default()
        },
        ..SimConfig::default()
    });
    let c = client(&sim);
    let id = format!(
        "/subscriptions/{SUB}/resourceGroups/MC_rg-poolnet-demo_aks-demo_westeurope/providers/Microsoft.Network/networkSecurityGroups/aks-agentpool-47472799-nsg"
    );
    sim.faults().add_other_writer(OtherWriter::new(&id, 1, OtherWriterAction::UpsertSecurityRule { rule: json!({"name": "k8s-azure-lb_allow_new", "properties": {
        "priority": 502, "direction": "Inbound", "access": "Allow", "protocol": "Tcp", "sourceAddressPrefix": "Internet",
        "sourcePortRange": "*", "destinationAddressPrefix": "192.0.2.30", "destinationPortRange": "8443"}}) }));
    let url = format!("{}{id}?{API}", sim.base_url());
    let (_, _, seen) = send(&c, reqwest::Method::GET, &url, None, &[]).await;
    let etag = seen["etag"].as_str().unwrap().to_string();
    let mut mine = seen.clone();
    mine["properties"]["securityRules"]
        .as_array_mut()
        .unwrap()
        .push(rule("poolnet-allow-80", 100, "80"));
    let (s, _, _) = send(
        &c,
        reqwest::Method::PUT,
        &url,
        Some(mine),
        &[("If-Match", &etag)],
    )
    .await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED);
    let (_, _, now) = send(&c, reqwest::Method::GET, &url, None, &[]).await;
    let names: Vec<&str> = now["properties"]["securityRules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"k8s-azure-lb_allow_new"));
    assert_eq!(sim.counters().other_writer_mutations, 1);
}

#[tokio::test]
async fn limits_are_enforced_and_configurable() {
    let limits = armsim::Limits {
        rules_per_nsg: 3,
        routes_per_table: 5,
        ..armsim::Limits::default()
    };
    let sim = demo(SimConfig {
        limits,
        lro: LroConfig {
            network_ms: 0,
            ..LroConfig::default()
        },
        ..SimConfig::default()
    });
    let c = client(&sim);
    let rules: Vec<Value> = (0..4)
        .map(|i| rule(&format!("r{i}"), 100 + i, "80"))
        .collect();
    let (s, _, b) = send(
        &c,
        reqwest::Method::PUT,
        &nsg_url(&sim, RG, "n"),
        Some(json!({"location": "westeurope", "properties": {"securityRules": rules}})),
        &[],
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(b["error"]["code"], "SecurityRulesLimitReached");
    // The fixture's kubenet table holds 5 node routes: a 6th is over the configured limit.
    let route = format!(
        "{}/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/routeTables/rt-kubenet/routes/extra?{API}",
        sim.base_url()
    );
    let (s, _, b) = send(
        &c,
        reqwest::Method::PUT,
        &route,
        Some(json!({"properties": {"addressPrefix": "10.9.0.0/16", "nextHopType": "None"}})),
        &[],
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(b["error"]["code"], "RouteTableRoutesLimitReached");
    let asgs: Vec<Value> = (0..11).map(|i| json!({"id": format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/applicationSecurityGroups/a{i}")})).collect();
    let (s, _, b) = send(&c, reqwest::Method::PUT, &nsg_url(&sim, RG, "n2"), Some(json!({"location": "westeurope", "properties": {"securityRules": [{"name": "x", "properties": {
        "priority": 100, "direction": "Inbound", "access": "Allow", "protocol": "Tcp", "sourceApplicationSecurityGroups": asgs,
        "sourcePortRange": "*", "destinationAddressPrefix": "*", "destinationPortRange": "80"}}]}})), &[]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        b["error"]["code"],
        "SecurityRuleTooManyApplicationSecurityGroups"
    );
}

#[tokio::test]
async fn agent_pool_scaling_is_bounded_by_its_prefix() {
    let sim = demo(SimConfig {
        lro: LroConfig {
            aks_ms: 0,
            network_ms: 0,
            ..LroConfig::default()
        },
        ..SimConfig::default()
    });
    let c = client(&sim);
    let base = format!("{}/subscriptions/{SUB}/resourceGroups/{RG}", sim.base_url());
    let prefix_url = format!("{base}/providers/Microsoft.Network/publicIPPrefixes/p30?{API}");
    let (s, _, prefix) = send(&c, reqwest::Method::PUT, &prefix_url, Some(json!({"location": "westeurope", "sku": {"name": "Standard"}, "properties": {"prefixLength": 30}})), &[]).await;
    assert_eq!(s, StatusCode::CREATED);
    let pool_url = format!(
        "{base}/providers/Microsoft.ContainerService/managedClusters/aks-demo/agentPools/edge?api-version=2024-02-01"
    );
    let body = |count: u32| json!({"properties": {"count": count, "enableNodePublicIP": true, "nodePublicIPPrefixID": prefix["id"]}});
    let (s, _, b) = send(&c, reqwest::Method::PUT, &pool_url, Some(body(5)), &[]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (s, _, b) = send(&c, reqwest::Method::PUT, &pool_url, Some(body(4)), &[]).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["properties"]["provisioningState"], "Succeeded");
    let ips_url = format!(
        "{}/subscriptions/{SUB}/resourceGroups/MC_rg-poolnet-demo_aks-demo_westeurope/providers/Microsoft.Compute/virtualMachineScaleSets/aks-edge-47472799-vmss/publicipaddresses?api-version=2018-10-01",
        sim.base_url()
    );
    let (_, _, ips) = send(&c, reqwest::Method::GET, &ips_url, None, &[]).await;
    assert_eq!(ips["value"].as_array().unwrap().len(), 4);
    let (s, _, _) = send(&c, reqwest::Method::PUT, &pool_url, Some(body(2)), &[]).await;
    assert_eq!(s, StatusCode::OK);
    let (_, _, ips) = send(&c, reqwest::Method::GET, &ips_url, None, &[]).await;
    assert_eq!(ips["value"].as_array().unwrap().len(), 2);
    let (s, _, b) = send(&c, reqwest::Method::PUT, &pool_url, Some(json!({"properties": {"count": 2, "enableNodePublicIP": true, "nodePublicIPPrefixID": prefix["id"], "vmSize": "Standard_E4s_v5"}})), &[]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(b["error"]["code"], "PropertyChangeNotAllowed");
}

fn pool_url(sim: &armsim::RunningSim, pool: &str, api_version: &str) -> String {
    format!(
        "{}/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ContainerService/managedClusters/aks-demo/agentPools/{pool}?api-version={api_version}",
        sim.base_url()
    )
}

/// The agent pool's eTag as AKS puts it in the body (`properties.eTag`), if any.
fn pool_etag(body: &Value) -> Option<String> {
    body["properties"]["eTag"].as_str().map(str::to_string)
}

/// AKS documents an agent pool eTag (body `properties.eTag`, never a header or a top-level
/// `etag`) from api-version 2024-10-01 on; 2024-09-01 and older answer without any.
#[tokio::test]
async fn agent_pool_etag_follows_the_api_version() {
    let sim = demo(SimConfig::default());
    let c = client(&sim);
    for old in ["2023-10-01", "2024-02-01", "2024-09-01"] {
        let (s, headers, body) = send(
            &c,
            reqwest::Method::GET,
            &pool_url(&sim, "game", old),
            None,
            &[],
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(body["properties"]["count"], 3);
        assert_eq!(pool_etag(&body), None, "{old}: {body}");
        assert!(body.get("etag").is_none(), "{old}: {body}");
        assert!(!headers.contains_key("etag"), "{old}: {headers:?}");
    }
    let (s, headers, body) = send(
        &c,
        reqwest::Method::GET,
        &pool_url(&sim, "game", "2024-10-01"),
        None,
        &[],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let etag = pool_etag(&body).expect("2024-10-01 documents properties.eTag");
    assert!(!etag.is_empty());
    assert!(body.get("etag").is_none(), "{body}");
    assert!(!headers.contains_key("etag"), "{headers:?}");
    let (_, _, newer) = send(
        &c,
        reqwest::Method::GET,
        &pool_url(&sim, "game", "2025-01-01"),
        None,
        &[],
    )
    .await;
    assert_eq!(pool_etag(&newer), Some(etag.clone()));

    // The list answers the same way.
    let list = |v: &str| {
        format!(
            "{}/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ContainerService/managedClusters/aks-demo/agentPools?api-version={v}",
            sim.base_url()
        )
    };
    let (_, _, old) = send(&c, reqwest::Method::GET, &list("2024-02-01"), None, &[]).await;
    let (_, _, new) = send(&c, reqwest::Method::GET, &list("2024-10-01"), None, &[]).await;
    let pools = |b: &Value| b["value"].as_array().unwrap().clone();
    assert!(
        pools(&old)
            .iter()
            .all(|p| pool_etag(p).is_none() && p.get("etag").is_none())
    );
    assert!(pools(&new).iter().all(|p| pool_etag(p).is_some()));
    assert!(
        pools(&new)
            .iter()
            .any(|p| p["name"] == "game" && pool_etag(p) == Some(etag.clone()))
    );
}

/// From 2024-10-01 a stale `If-Match` is 412 `PreconditionFailed` and `If-None-Match: *` on an
/// existing pool too; at 2024-02-01 AKS documents neither header and armsim ignores both.
#[tokio::test]
async fn agent_pool_preconditions_follow_the_api_version() {
    let sim = demo(SimConfig {
        lro: LroConfig {
            aks_ms: 0,
            ..LroConfig::default()
        },
        ..SimConfig::default()
    });
    let c = client(&sim);
    let new = pool_url(&sim, "game", "2024-10-01");
    let old = pool_url(&sim, "game", "2024-02-01");
    let (_, _, read) = send(&c, reqwest::Method::GET, &new, None, &[]).await;
    let stale = pool_etag(&read).unwrap();

    // Someone else scales the pool: its eTag moves.
    let (s, _, b) = send(
        &c,
        reqwest::Method::PUT,
        &new,
        Some(json!({"properties": {"count": 2}})),
        &[],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let current = pool_etag(&b).unwrap();
    assert_ne!(current, stale);

    // A write built on the first read is refused, and the foreign change stays.
    let mut mine = read.clone();
    mine["properties"]["count"] = json!(4);
    let (s, _, b) = send(
        &c,
        reqwest::Method::PUT,
        &new,
        Some(mine.clone()),
        &[("If-Match", &stale)],
    )
    .await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED, "{b}");
    assert_eq!(b["error"]["code"], "PreconditionFailed");
    let (s, _, b) = send(
        &c,
        reqwest::Method::PUT,
        &new,
        Some(mine.clone()),
        &[("If-None-Match", "*")],
    )
    .await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED, "{b}");
    let (_, _, now) = send(&c, reqwest::Method::GET, &new, None, &[]).await;
    assert_eq!(now["properties"]["count"], 2);
    assert_eq!(pool_etag(&now), Some(current.clone()));

    // With the current eTag it goes through; the stale read-only eTag in the body is ignored.
    let (s, _, b) = send(
        &c,
        reqwest::Method::PUT,
        &new,
        Some(mine.clone()),
        &[("If-Match", &current)],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["properties"]["count"], 4);
    let after = pool_etag(&b).unwrap();
    assert!(after != current && after != stale);

    // 2024-02-01: the headers are not part of the operation; the write is unconditional.
    let (s, _, b) = send(
        &c,
        reqwest::Method::PUT,
        &old,
        Some(json!({"properties": {"count": 3}})),
        &[("If-Match", &stale)],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["properties"]["count"], 3);
    assert!(b.get("etag").is_none() && pool_etag(&b).is_none(), "{b}");
    let (s, _, b) = send(
        &c,
        reqwest::Method::PUT,
        &old,
        Some(json!({"properties": {"count": 3}})),
        &[("If-None-Match", "*")],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");

    // DELETE: If-Match is documented (and honoured) from 2024-10-01 only.
    let (s, _, b) = send(
        &c,
        reqwest::Method::DELETE,
        &pool_url(&sim, "kubenet", "2024-10-01"),
        None,
        &[("If-Match", &stale)],
    )
    .await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED, "{b}");
    let (s, _, b) = send(
        &c,
        reqwest::Method::DELETE,
        &pool_url(&sim, "kubenet", "2024-02-01"),
        None,
        &[("If-Match", &stale)],
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
}

#[tokio::test]
async fn plain_http_snapshot_and_restore() {
    let dir = std::env::temp_dir().join(format!("armsim-snap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let snap = dir.join("state.json");
    let sim = demo(SimConfig {
        lro: LroConfig {
            network_ms: 0,
            ..LroConfig::default()
        },
        ..SimConfig::default()
    });
    assert!(sim.base_url().starts_with("http://"));
    assert!(sim.ca_pem().is_none());
    let c = client(&sim);
    let (s, _, _) = send(
        &c,
        reqwest::Method::PUT,
        &nsg_url(&sim, RG, "kept"),
        Some(json!({"location": "westeurope"})),
        &[],
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    sim.save_snapshot(&snap).unwrap();
    sim.shutdown();

    let restored = armsim::start(
        SimConfig {
            restore_from: Some(snap.clone()),
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let id = format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/networkSecurityGroups/kept"
    );
    assert!(restored.resource(&id).is_some());
    let c = client(&restored);
    let (s, _, _) = send(
        &c,
        reqwest::Method::GET,
        &nsg_url(&restored, RG, "kept"),
        None,
        &[],
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn fixture_is_validated_like_a_put() {
    let bad = Fixture::from_yaml(&format!(
        "subscriptions: [{{id: {SUB}, resourceGroups: [{{name: rg, location: westeurope}}]}}]\nresources:\n  - id: /subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/n\n    location: westeurope\n    properties:\n      securityRules:\n        - {{name: a, properties: {{priority: 100, direction: Inbound, access: Allow, protocol: Tcp, sourceAddressPrefix: '*', sourcePortRange: '*', destinationAddressPrefix: '*', destinationPortRange: '80'}}}}\n        - {{name: b, properties: {{priority: 100, direction: Inbound, access: Allow, protocol: Tcp, sourceAddressPrefix: '*', sourcePortRange: '*', destinationAddressPrefix: '*', destinationPortRange: '81'}}}}\n"
    ))
    .unwrap();
    let err = armsim::start(
        SimConfig {
            seed: Some(bad),
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .err()
    .expect("a conflicting fixture is refused");
    assert!(
        format!("{err:#}").contains("SecurityRuleConflict"),
        "{err:#}"
    );
}

#[tokio::test]
async fn a_stalled_operation_stays_in_progress_and_writes_are_logged_with_their_client() {
    let sim = demo(SimConfig {
        lro: LroConfig {
            network_ms: 0,
            ..LroConfig::default()
        },
        ..SimConfig::default()
    });
    let c = client(&sim);
    sim.faults().add_rule(
        FaultRule::new(FaultAction::StallOperation { ms: 400 })
            .method("PUT")
            .count(1),
    );
    let url = nsg_url(&sim, RG, "nsg-stalled");
    let put = |ua: &'static str| {
        let c = c.clone();
        let url = url.clone();
        async move {
            c.put(&url)
                .bearer_auth("t")
                .header("user-agent", ua)
                .header("content-type", "application/json")
                .body(json!({"location": "westeurope"}).to_string())
                .send()
                .await
                .unwrap()
        }
    };
    let first = put("tool-a").await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let op_url = first.headers()["azure-asyncoperation"]
        .to_str()
        .unwrap()
        .to_string();
    // With zero configured duration, only the stall keeps it running.
    for _ in 0..3 {
        let (_, _, op) = send(&c, reqwest::Method::GET, &op_url, None, &[]).await;
        assert_eq!(op["status"], "InProgress");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(wait_op(&c, &op_url).await["status"], "Succeeded");
    // The rule hit once: the next write finishes at once.
    let second = put("tool-b").await;
    assert!(second.status().is_success());

    let log = sim.writes();
    let puts: Vec<_> = log.records.iter().filter(|r| r.method == "PUT").collect();
    assert_eq!(puts.len(), 2, "{log:?}");
    assert_eq!(puts[0].user_agent, "tool-a");
    assert_eq!(puts[1].user_agent, "tool-b");
    assert!(puts[0].path.ends_with("/networkSecurityGroups/nsg-stalled"));
    assert!(puts[0].received_unix_ms <= puts[1].received_unix_ms);
    assert!(log.records.iter().all(|r| r.method != "GET"));
    // Over the control API as well, and it can be cleared.
    let base = sim.base_url();
    let (s, _, body) = send(
        &c,
        reqwest::Method::GET,
        &format!("{base}/_armsim/writes"),
        None,
        &[],
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["records"][0]["userAgent"], "tool-a");
    send(
        &c,
        reqwest::Method::DELETE,
        &format!("{base}/_armsim/writes"),
        None,
        &[],
    )
    .await;
    assert!(sim.writes().records.is_empty());
}

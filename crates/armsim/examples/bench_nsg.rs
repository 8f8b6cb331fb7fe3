//! Benchmark: GET and If-Match PUT of an NSG holding 500 rules, against armsim on loopback.
//! Prints requests/s and p50/p99 latency. Bounded: a fixed number of sequential requests.
//!
//! `cargo run --release -p armsim --example bench_nsg -- [--gets 2000] [--puts 300] [--tls]`

use anyhow::{Context, bail};
use armsim::{Fixture, LroConfig, SimConfig, ThrottleConfig};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const SUB: &str = "00000000-1111-2222-3333-444444444444";

struct Args {
    gets: usize,
    puts: usize,
    tls: bool,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        gets: 2000,
        puts: 300,
        tls: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--gets" => a.gets = it.next().context("--gets N")?.parse()?,
            "--puts" => a.puts = it.next().context("--puts N")?.parse()?,
            "--tls" => a.tls = true,
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(a)
}

fn report(what: &str, mut samples: Vec<Duration>, total: Duration) {
    samples.sort();
    let pct = |p: f64| {
        samples[((samples.len() as f64 * p).ceil() as usize)
            .saturating_sub(1)
            .min(samples.len() - 1)]
    };
    println!(
        "{what:<28} n={:<5} {:>8.1} req/s   p50 {:>7.3} ms   p99 {:>7.3} ms",
        samples.len(),
        samples.len() as f64 / total.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let sim = armsim::start(
        SimConfig {
            seed: Some(Fixture::aks_demo()?),
            tls: args.tls,
            throttling: ThrottleConfig {
                enabled: false,
                ..ThrottleConfig::default()
            },
            lro: LroConfig {
                network_ms: 0,
                ..LroConfig::default()
            },
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse()?,
    )?;
    let mut builder = reqwest::Client::builder().use_rustls_tls();
    if let Some(pem) = sim.ca_pem() {
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes())?);
    }
    let client = builder.build()?;
    let url = format!(
        "{}/subscriptions/{SUB}/resourceGroups/rg-poolnet-demo/providers/Microsoft.Network/networkSecurityGroups/nsg-bench?api-version=2024-03-01",
        sim.base_url()
    );
    let rules: Vec<Value> = (0..500)
        .map(|i| {
            json!({"name": format!("poolnet-rule-{i:03}"), "properties": {
                "priority": 100 + i, "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
                "sourceAddressPrefixes": [format!("10.{}.{}.0/24", i / 256, i % 256)], "sourcePortRange": "*",
                "destinationAddressPrefix": "*", "destinationPortRanges": [format!("{}", 40000 + i), "443"]}})
        })
        .collect();
    let body = json!({"location": "westeurope", "properties": {"securityRules": rules}});
    let body_text = body.to_string();
    let created = client
        .put(&url)
        .bearer_auth("bench")
        .header("content-type", "application/json")
        .body(body_text.clone())
        .send()
        .await?;
    if !created.status().is_success() {
        bail!(
            "creating the NSG failed: {} {}",
            created.status(),
            created.text().await?
        );
    }
    let mut etag = serde_json::from_slice::<Value>(&created.bytes().await?)?["etag"]
        .as_str()
        .unwrap_or("")
        .to_string();
    println!(
        "armsim at {} ({}), NSG with 500 rules, {} bytes per body",
        sim.base_url(),
        if args.tls { "HTTPS" } else { "HTTP" },
        body_text.len()
    );

    let mut samples = Vec::with_capacity(args.gets);
    let start = Instant::now();
    for _ in 0..args.gets {
        let t = Instant::now();
        let resp = client.get(&url).bearer_auth("bench").send().await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        samples.push(t.elapsed());
        if !status.is_success() || bytes.is_empty() {
            bail!("GET failed: {status}");
        }
    }
    report("GET nsg (500 rules)", samples, start.elapsed());

    let mut samples = Vec::with_capacity(args.puts);
    let start = Instant::now();
    for _ in 0..args.puts {
        let t = Instant::now();
        let resp = client
            .put(&url)
            .bearer_auth("bench")
            .header("If-Match", &etag)
            .header("content-type", "application/json")
            .body(body_text.clone())
            .send()
            .await?;
        let status = resp.status();
        let answer: Value = serde_json::from_slice(&resp.bytes().await?)?;
        samples.push(t.elapsed());
        if !status.is_success() {
            bail!("PUT failed: {status} {answer}");
        }
        etag = answer["etag"].as_str().unwrap_or("").to_string();
    }
    report("PUT nsg If-Match (500 rules)", samples, start.elapsed());
    let c = sim.counters();
    println!(
        "counters: total {} requests, {} accepted writes",
        c.total, c.accepted_writes
    );
    sim.shutdown();
    Ok(())
}

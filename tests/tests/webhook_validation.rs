//! poolnet's validating webhook against the real API server: HostPortPolicies are checked
//! against their pool, their namespace and every other policy; NodePoolNetworks get the
//! checks CEL cannot express. Denials carry the FieldErrors message.

mod hostports_support;

use anyhow::Result;
use hostports_support::*;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams, PostParams};
use poolnet_api::v1alpha1::{HostPortPolicy, NodePoolNetwork};
use poolnet_tests::TestEnv;
use serde_json::json;

async fn setup() -> Result<(TestEnv, Instance)> {
    let env = TestEnv::shared().await?;
    let client = env.client();
    let ns = env.namespace().to_string();
    let poolnet = Instance::start(
        &client,
        &ns,
        &Configs::for_namespace(&ns),
        Options::default(),
    )
    .await?;
    activate(&client, &ns, &poolnet.base_url()).await?;
    Ok((env, poolnet))
}

fn policy(ns: &str, name: &str, pool: &str, ports: serde_json::Value) -> Result<HostPortPolicy> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "poolnet.dev/v1alpha1", "kind": "HostPortPolicy",
        "metadata": {"name": name, "labels": {OWNER_LABEL: ns}},
        "spec": {"nodePoolNetwork": pool, "podSelector": {}, "ports": ports},
    }))?)
}

fn denied(result: Result<HostPortPolicy, kube::Error>) -> String {
    match result {
        Ok(p) => panic!("admitted: {p:?}"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn host_port_policies_are_checked_against_pool_namespace_and_other_policies() -> Result<()> {
    let (env, _poolnet) = setup().await?;
    let client = env.client();
    let ns = env.namespace();
    let policies: Api<HostPortPolicy> = Api::namespaced(client.clone(), ns);
    let pp = PostParams::default();

    let msg = denied(
        policies
            .create(
                &pp,
                &policy(ns, "p", "no-such-pool", json!([{"containerPort": 8080}]))?,
            )
            .await,
    );
    assert!(
        msg.contains("spec.nodePoolNetwork") && msg.contains("no NodePoolNetwork has this name"),
        "{msg}"
    );

    // A pool that admits only namespaces labelled team=games.
    let pool_name = format!("sel-{ns}");
    let pool: NodePoolNetwork = serde_json::from_value(json!({
        "apiVersion": "poolnet.dev/v1alpha1", "kind": "NodePoolNetwork",
        "metadata": {"name": pool_name, "labels": {OWNER_LABEL: ns}},
        "spec": {
            "nodePool": {"agentPoolId": "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks/agentPools/game"},
            "allowedHostPorts": ["40000-59999/tcp", "53/udp"],
            "hostPortPolicies": {"from": "Selector", "selector": {"matchLabels": {"team": "games"}}},
            "reconcilePolicy": "Observe"
        }
    }))?;
    Api::<NodePoolNetwork>::all(client.clone())
        .create(&pp, &pool)
        .await?;
    let msg = denied(
        policies
            .create(
                &pp,
                &policy(ns, "p", &pool_name, json!([{"containerPort": 8080}]))?,
            )
            .await,
    );
    assert!(
        msg.contains("does not admit HostPortPolicies from namespace"),
        "{msg}"
    );

    Api::<Namespace>::all(client.clone())
        .patch(
            ns,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"team": "games"}}})),
        )
        .await?;
    // Admitted now; a static port outside the pool's host ports is not.
    let msg = denied(
        policies
            .create(
                &pp,
                &policy(
                    ns,
                    "p",
                    &pool_name,
                    json!([{"containerPort": 53, "protocol": "UDP", "hostPort": 54}]),
                )?,
            )
            .await,
    );
    assert!(
        msg.contains("spec.ports[0].hostPort") && msg.contains("not in the allowed host ports"),
        "{msg}"
    );
    policies
        .create(
            &pp,
            &policy(
                ns,
                "dns",
                &pool_name,
                json!([{"containerPort": 53, "protocol": "UDP", "hostPort": 53}]),
            )?,
        )
        .await?;
    // Static host ports are cluster-unique across policies.
    let msg = denied(
        policies
            .create(
                &pp,
                &policy(
                    ns,
                    "dns2",
                    &pool_name,
                    json!([{"containerPort": 5353, "protocol": "UDP", "hostPort": 53}]),
                )?,
            )
            .await,
    );
    assert!(
        msg.contains(&format!(
            "already reserved statically by HostPortPolicy {ns}/dns"
        )),
        "{msg}"
    );
    // A range outside the pool's allowed ports.
    let mut wide = policy(ns, "wide", &pool_name, json!([{"containerPort": 8080}]))?;
    wide.spec.host_port_range.start = 30000;
    let msg = denied(policies.create(&pp, &wide).await);
    assert!(
        msg.contains("spec.hostPortRange") && msg.contains("not inside the allowed host ports"),
        "{msg}"
    );
    Ok(())
}

#[tokio::test]
async fn node_pool_networks_get_the_checks_cel_cannot_express() -> Result<()> {
    let (env, _poolnet) = setup().await?;
    let client = env.client();
    let name = format!("overlap-{}", env.namespace());
    let pool: NodePoolNetwork = serde_json::from_value(json!({
        "apiVersion": "poolnet.dev/v1alpha1", "kind": "NodePoolNetwork",
        "metadata": {"name": name, "labels": {OWNER_LABEL: env.namespace()}},
        "spec": {
            "nodePool": {"agentPoolId": "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks/agentPools/game"},
            "allowedHostPorts": ["40000-60000/tcp", "50000/tcp"],
        }
    }))?;
    let e = Api::<NodePoolNetwork>::all(client)
        .create(&PostParams::default(), &pool)
        .await
        .expect_err("overlapping host ports");
    let msg = e.to_string();
    assert!(
        msg.contains("poolnet: spec.allowedHostPorts[1]") && msg.contains("overlaps"),
        "{msg}"
    );
    Ok(())
}

#[tokio::test]
async fn a_second_node_pool_network_on_the_same_agent_pool_is_refused() -> Result<()> {
    let (env, _poolnet) = setup().await?;
    let client = env.client();
    let ns = env.namespace();
    let npns = Api::<NodePoolNetwork>::all(client);
    let pp = PostParams::default();
    // An agent pool of this test's own: the control plane is shared with other tests. AKS
    // pool names are 1-12 lower-case letters and digits: "p" and 8 hex digits of the namespace.
    let cluster = "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks";
    let agent_pool = format!(
        "{cluster}/agentPools/p{}",
        poolnet_api::ownership::short_hash(&[ns])
    );
    let npn = |name: &str, agent_pool: &str| -> Result<NodePoolNetwork> {
        Ok(serde_json::from_value(json!({
            "apiVersion": "poolnet.dev/v1alpha1", "kind": "NodePoolNetwork",
            "metadata": {"name": name, "labels": {OWNER_LABEL: ns}},
            "spec": {
                "nodePool": {"agentPoolId": agent_pool},
                "allowedHostPorts": ["40000-59999/tcp"],
                "reconcilePolicy": "Observe"
            }
        }))?)
    };
    let first = format!("first-{ns}");
    npns.create(&pp, &npn(&first, &agent_pool)?).await?;

    // The same pool, its cluster spelled in another case (ARM IDs compare case-insensitively;
    // the pool name itself is lower case, as AKS names pools).
    let shouted = agent_pool.replacen(cluster, &cluster.to_ascii_uppercase(), 1);
    let e = npns
        .create(&pp, &npn(&format!("second-{ns}"), &shouted)?)
        .await
        .expect_err("a second NodePoolNetwork on the same agent pool");
    let msg = e.to_string();
    assert!(
        msg.contains("spec.nodePool.agentPoolId")
            && msg.contains(&format!("NodePoolNetwork {first:?}"))
            && msg.contains("one NodePoolNetwork per agent pool")
            && msg.contains("delete it first"),
        "{msg}"
    );

    // Updating the object that holds the pool is fine.
    npns.patch(
        &first,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"allowedHostPorts": ["40000-49999/tcp"]}})),
    )
    .await?;
    Ok(())
}

"""AKS agent pools through azure-mgmt-containerservice: node public IPs drawn from a prefix
with IP tags (seen through the VMSS listing), ASG membership, creation-only fields, scaling."""

import ipaddress

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.resource.features import FeatureClient

from conftest import CLUSTER, LOCATION, NODE_RG, RG, SUB, VMSS_DIGITS, StaticCredential, _kwargs, nid


def vmss_ips(network, pool):
    return list(
        network.public_ip_addresses.list_virtual_machine_scale_set_public_ip_addresses(NODE_RG, f"aks-{pool}-{VMSS_DIGITS}-vmss")
    )


def test_fixture_game_pool(aks, network):
    cluster = aks.managed_clusters.get(RG, CLUSTER)
    assert cluster.node_resource_group == NODE_RG
    assert {p.name for p in cluster.agent_pool_profiles} >= {"game", "kubenet"}
    game = aks.agent_pools.get(RG, CLUSTER, "game")
    assert game.count == 3 and game.enable_node_public_ip
    assert game.network_profile.node_public_ip_tags[0].tag == "Internet"
    prefix = network.public_ip_prefixes.get(RG, "pipp-game")
    ips = vmss_ips(network, "game")
    assert len(ips) == 3
    for ip in ips:
        assert ipaddress.ip_address(ip.ip_address) in ipaddress.ip_network(prefix.ip_prefix)
        assert [(t.ip_tag_type, t.tag) for t in ip.ip_tags] == [("RoutingPreference", "Internet")]
    assert vmss_ips(network, "kubenet") == []
    assert {p.name for p in aks.agent_pools.list(RG, CLUSTER)} >= {"game", "kubenet"}


def test_agent_pool_lifecycle(aks, network):
    prefix = network.public_ip_prefixes.begin_create_or_update(
        RG,
        "pipp-web",
        {
            "location": LOCATION,
            "sku": {"name": "Standard"},
            "prefix_length": 29,
            "ip_tags": [{"ip_tag_type": "RoutingPreference", "tag": "Internet"}],
        },
    ).result()
    asg = network.application_security_groups.begin_create_or_update(RG, "asg-web", {"location": LOCATION}).result()
    pool = aks.agent_pools.begin_create_or_update(
        RG,
        CLUSTER,
        "web",
        {
            "count": 2,
            "vm_size": "Standard_D2s_v5",
            "mode": "User",
            "enable_node_public_ip": True,
            "node_public_ip_prefix_id": prefix.id,
            "network_profile": {
                "allowed_host_ports": [
                    {"port_start": 80, "port_end": 80, "protocol": "TCP"},
                    {"port_start": 40000, "port_end": 60000, "protocol": "UDP"},
                ],
                "application_security_groups": [asg.id],
                "node_public_ip_tags": [{"ip_tag_type": "RoutingPreference", "tag": "Internet"}],
            },
        },
    ).result()
    assert pool.provisioning_state == "Succeeded"
    assert pool.network_profile.allowed_host_ports[1].port_end == 60000
    assert len(vmss_ips(network, "web")) == 2
    nics = list(network.network_interfaces.list_virtual_machine_scale_set_network_interfaces(NODE_RG, f"aks-web-{VMSS_DIGITS}-vmss"))
    assert len(nics) == 2
    assert all(n.ip_configurations[0].application_security_groups[0].id == asg.id for n in nics)
    with pytest.raises(HttpResponseError) as e:
        network.application_security_groups.begin_delete(RG, "asg-web").result()
    assert e.value.error.code == "InUseApplicationSecurityGroupCannotBeDeleted"

    # Scale up: one more node, one more address from the prefix.
    pool.count = 4
    scaled = aks.agent_pools.begin_create_or_update(RG, CLUSTER, "web", pool).result()
    assert scaled.count == 4
    addrs = [ipaddress.ip_address(i.ip_address) for i in vmss_ips(network, "web")]
    assert len(set(addrs)) == 4 and all(a in ipaddress.ip_network(prefix.ip_prefix) for a in addrs)
    assert len(network.public_ip_prefixes.get(RG, "pipp-web").public_ip_addresses) == 4

    # Host ports and ASGs can change; creation-only fields cannot.
    current = aks.agent_pools.get(RG, CLUSTER, "web")
    current.network_profile.allowed_host_ports = [{"port_start": 443, "port_end": 443, "protocol": "TCP"}]
    assert aks.agent_pools.begin_create_or_update(RG, CLUSTER, "web", current).result().network_profile.allowed_host_ports[0].port_start == 443
    for field, value in (
        ("node_public_ip_prefix_id", nid(RG, "publicIPPrefixes", "pipp-game")),
        ("enable_node_public_ip", False),
        ("vm_size", "Standard_D8s_v5"),
    ):
        current = aks.agent_pools.get(RG, CLUSTER, "web")
        setattr(current, field, value)
        with pytest.raises(HttpResponseError) as e:
            aks.agent_pools.begin_create_or_update(RG, CLUSTER, "web", current).result()
        assert e.value.status_code == 400 and e.value.error.code == "PropertyChangeNotAllowed", field
    current = aks.agent_pools.get(RG, CLUSTER, "web")
    current.network_profile.node_public_ip_tags = []
    with pytest.raises(HttpResponseError) as e:
        aks.agent_pools.begin_create_or_update(RG, CLUSTER, "web", current).result()
    assert e.value.error.code == "PropertyChangeNotAllowed"

    with pytest.raises(HttpResponseError) as e:
        network.public_ip_prefixes.begin_delete(RG, "pipp-web").result()
    assert e.value.error.code == "InUsePublicIpPrefixCannotBeDeleted"

    # Scale down releases addresses.
    current = aks.agent_pools.get(RG, CLUSTER, "web")
    current.count = 1
    aks.agent_pools.begin_create_or_update(RG, CLUSTER, "web", current).result()
    assert len(vmss_ips(network, "web")) == 1

    aks.agent_pools.begin_delete(RG, CLUSTER, "web").result()
    with pytest.raises(ResourceNotFoundError):
        aks.agent_pools.get(RG, CLUSTER, "web")
    network.public_ip_prefixes.begin_delete(RG, "pipp-web").result()
    network.application_security_groups.begin_delete(RG, "asg-web").result()


def test_agent_pool_validation(aks):
    bad = {"count": 1, "enable_node_public_ip": False, "node_public_ip_prefix_id": nid(RG, "publicIPPrefixes", "pipp-game")}
    with pytest.raises(HttpResponseError) as e:
        aks.agent_pools.begin_create_or_update(RG, CLUSTER, "bad1", bad).result()
    assert e.value.error.code == "InvalidParameter"
    ports = {"count": 1, "network_profile": {"allowed_host_ports": [{"port_start": 90, "port_end": 80, "protocol": "TCP"}]}}
    with pytest.raises(HttpResponseError) as e:
        aks.agent_pools.begin_create_or_update(RG, CLUSTER, "bad2", ports).result()
    assert e.value.error.code == "InvalidParameter"
    with pytest.raises(HttpResponseError) as e:
        aks.agent_pools.begin_create_or_update(RG, CLUSTER, "bad3", {"count": 20, "enable_node_public_ip": True, "node_public_ip_prefix_id": nid(RG, "publicIPPrefixes", "pipp-game")}).result()
    assert e.value.status_code == 400
    # Autoscaling: count must lie within minCount..maxCount.
    scaled = {"count": 5, "enable_auto_scaling": True, "min_count": 1, "max_count": 3}
    with pytest.raises(HttpResponseError) as e:
        aks.agent_pools.begin_create_or_update(RG, CLUSTER, "bad4", scaled).result()
    assert e.value.error.code == "InvalidParameter"
    assert "between minCount 1 and maxCount 3" in e.value.error.message
    assert SUB


def test_managed_asg_for_host_ports(aks, network):
    aks.agent_pools.begin_create_or_update(
        RG, CLUSTER, "hp", {"count": 1, "network_profile": {"allowed_host_ports": [{"port_start": 8080, "port_end": 8080, "protocol": "TCP"}]}}
    ).result()
    managed = [a for a in network.application_security_groups.list(NODE_RG) if a.name.startswith(f"aks-hp-{VMSS_DIGITS}")]
    assert len(managed) == 1
    aks.agent_pools.begin_delete(RG, CLUSTER, "hp").result()
    assert not [a for a in network.application_security_groups.list(NODE_RG) if a.name.startswith(f"aks-hp-{VMSS_DIGITS}")]


def test_preview_feature_registration(armsim_url, ca_file):
    """`az feature show`: poolnet reads whether AKS's host-port auto-assignment preview is
    registered (the demo fixture registers none)."""
    features = FeatureClient(StaticCredential(), SUB, **_kwargs(armsim_url, ca_file))
    f = features.features.get("Microsoft.ContainerService", "PodHostPortAutoAssignPreview")
    assert f.name == "Microsoft.ContainerService/PodHostPortAutoAssignPreview"
    assert f.type == "Microsoft.Features/providers/features"
    assert f.properties.state == "NotRegistered"

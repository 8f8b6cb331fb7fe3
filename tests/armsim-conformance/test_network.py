"""Create / get / list / update / delete of every Microsoft.Network type through the SDK,
with long-running-operation polling, and the Azure errors each type reports."""

import ipaddress

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.network.models import SecurityRule

from conftest import LOCATION, SUB, nid

DOC_RANGES = [ipaddress.ip_network(n) for n in ("203.0.113.0/24", "198.51.100.0/24", "198.18.0.0/15", "2001:db8::/32")]


def rule(name, priority, ports, direction="Inbound", **extra):
    body = {
        "name": name,
        "priority": priority,
        "direction": direction,
        "access": "Allow",
        "protocol": "Tcp",
        "source_address_prefix": "Internet",
        "source_port_range": "*",
        "destination_address_prefix": "*",
        "destination_port_ranges": ports,
    }
    body.update(extra)
    return body


def test_nsg_lifecycle(network, rg):
    nsg = network.network_security_groups.begin_create_or_update(
        rg, "nsg1", {"location": LOCATION, "security_rules": [rule("allow-web", 100, ["80", "443"])]}
    ).result()
    assert nsg.provisioning_state == "Succeeded"
    assert nsg.etag.startswith('W/"')
    assert [r.name for r in nsg.security_rules] == ["allow-web"]
    assert nsg.security_rules[0].etag == nsg.etag
    assert sorted(r.priority for r in nsg.default_security_rules) == [65000, 65000, 65001, 65001, 65500, 65500]

    got = network.network_security_groups.get(rg, "nsg1")
    assert got.id == nid(rg, "networkSecurityGroups", "nsg1")
    assert got.security_rules[0].destination_port_ranges == ["80", "443"]

    assert "nsg1" in [n.name for n in network.network_security_groups.list(rg)]
    assert got.id in [n.id for n in network.network_security_groups.list_all()]

    tagged = network.network_security_groups.update_tags(rg, "nsg1", {"tags": {"owner": "poolnet"}})
    assert tagged.tags == {"owner": "poolnet"}
    assert tagged.etag != got.etag

    got.security_rules.append(SecurityRule(**rule("allow-game", 110, ["40000-60000"], protocol="Udp")))
    updated = network.network_security_groups.begin_create_or_update(rg, "nsg1", got).result()
    assert {r.name for r in updated.security_rules} == {"allow-web", "allow-game"}

    network.network_security_groups.begin_delete(rg, "nsg1").result()
    with pytest.raises(ResourceNotFoundError) as e:
        network.network_security_groups.get(rg, "nsg1")
    assert e.value.error.code == "ResourceNotFound"


def test_security_rule_child_endpoints(network, rg):
    network.network_security_groups.begin_create_or_update(rg, "nsg2", {"location": LOCATION}).result()
    created = network.security_rules.begin_create_or_update(rg, "nsg2", "r1", rule("r1", 200, ["8080"])).result()
    assert created.provisioning_state == "Succeeded" and created.priority == 200
    assert created.id == nid(rg, "networkSecurityGroups", "nsg2") + "/securityRules/r1"
    network.security_rules.begin_create_or_update(rg, "nsg2", "r2", rule("r2", 201, ["8081"])).result()
    assert sorted(r.name for r in network.security_rules.list(rg, "nsg2")) == ["r1", "r2"]
    assert network.security_rules.get(rg, "nsg2", "r2").destination_port_ranges == ["8081"]
    defaults = list(network.default_security_rules.list(rg, "nsg2"))
    assert {d.name for d in defaults} >= {"DenyAllInBound", "AllowInternetOutBound"}
    assert network.default_security_rules.get(rg, "nsg2", "DenyAllInBound").access == "Deny"

    with pytest.raises(HttpResponseError) as e:
        network.security_rules.begin_create_or_update(rg, "nsg2", "dup", rule("dup", 200, ["9"])).result()
    assert e.value.error.code == "SecurityRuleConflict"
    # Same priority in the other direction is fine.
    network.security_rules.begin_create_or_update(rg, "nsg2", "out", rule("out", 200, ["9"], direction="Outbound")).result()

    network.security_rules.begin_delete(rg, "nsg2", "r1").result()
    with pytest.raises(ResourceNotFoundError) as e:
        network.security_rules.get(rg, "nsg2", "r1")
    assert e.value.error.code == "NotFound"


@pytest.mark.parametrize(
    "change, code",
    [
        ({"priority": 99}, "SecurityRuleInvalidPriority"),
        ({"priority": 4097}, "SecurityRuleInvalidPriority"),
        ({"destination_port_ranges": ["70000"]}, "SecurityRuleInvalidPortRange"),
        ({"destination_port_ranges": ["90-80"]}, "SecurityRuleInvalidPortRange"),
        ({"source_address_prefix": "10.0.0.0/33"}, "SecurityRuleInvalidAddressPrefix"),
    ],
)
def test_invalid_rules_are_refused(network, rg, change, code):
    network.network_security_groups.begin_create_or_update(rg, "nsg3", {"location": LOCATION}).result()
    body = rule("bad", 300, ["80"])
    body.update(change)
    with pytest.raises(HttpResponseError) as e:
        network.security_rules.begin_create_or_update(rg, "nsg3", "bad", body).result()
    assert e.value.status_code == 400
    assert e.value.error.code == code


def test_asg_lifecycle_and_in_use(network, rg):
    asg = network.application_security_groups.begin_create_or_update(rg, "asg1", {"location": LOCATION}).result()
    assert asg.provisioning_state == "Succeeded" and asg.resource_guid
    assert network.application_security_groups.get(rg, "asg1").id == asg.id
    assert [a.name for a in network.application_security_groups.list(rg)] == ["asg1"]
    assert asg.id in [a.id for a in network.application_security_groups.list_all()]
    tagged = network.application_security_groups.update_tags(rg, "asg1", {"tags": {"pool": "game"}})
    assert tagged.tags == {"pool": "game"}

    network.network_security_groups.begin_create_or_update(
        rg,
        "nsg4",
        {
            "location": LOCATION,
            "security_rules": [
                {
                    "name": "to-asg",
                    "priority": 100,
                    "direction": "Inbound",
                    "access": "Allow",
                    "protocol": "Tcp",
                    "source_address_prefix": "*",
                    "source_port_range": "*",
                    "destination_application_security_groups": [{"id": asg.id}],
                    "destination_port_range": "443",
                }
            ],
        },
    ).result()
    with pytest.raises(HttpResponseError) as e:
        network.application_security_groups.begin_delete(rg, "asg1").result()
    assert e.value.error.code == "InUseApplicationSecurityGroupCannotBeDeleted"

    missing = nid(rg, "applicationSecurityGroups", "nope")
    with pytest.raises(HttpResponseError) as e:
        network.security_rules.begin_create_or_update(
            rg,
            "nsg4",
            "bad-ref",
            {
                "priority": 101,
                "direction": "Inbound",
                "access": "Allow",
                "protocol": "Tcp",
                "source_address_prefix": "*",
                "source_port_range": "*",
                "destination_application_security_groups": [{"id": missing}],
                "destination_port_range": "443",
            },
        ).result()
    assert e.value.error.code == "InvalidResourceReference"

    network.network_security_groups.begin_delete(rg, "nsg4").result()
    network.application_security_groups.begin_delete(rg, "asg1").result()
    assert list(network.application_security_groups.list(rg)) == []


def _in_doc_ranges(net):
    return any(net.subnet_of(r) for r in DOC_RANGES if r.version == net.version)


def test_public_ip_prefix_and_addresses(network, rg):
    prefix = network.public_ip_prefixes.begin_create_or_update(
        rg,
        "pfx",
        {
            "location": LOCATION,
            "sku": {"name": "Standard"},
            "prefix_length": 30,
            "public_ip_address_version": "IPv4",
            "ip_tags": [{"ip_tag_type": "RoutingPreference", "tag": "Internet"}],
        },
    ).result()
    net = ipaddress.ip_network(prefix.ip_prefix)
    assert net.prefixlen == 30 and _in_doc_ranges(net)
    assert prefix.ip_tags[0].tag == "Internet"
    assert network.public_ip_prefixes.get(rg, "pfx").ip_prefix == prefix.ip_prefix
    assert [p.name for p in network.public_ip_prefixes.list(rg)] == ["pfx"]
    assert prefix.id in [p.id for p in network.public_ip_prefixes.list_all()]
    assert network.public_ip_prefixes.update_tags(rg, "pfx", {"tags": {"a": "b"}}).tags == {"a": "b"}

    v6 = network.public_ip_prefixes.begin_create_or_update(
        rg, "pfx6", {"location": LOCATION, "sku": {"name": "Standard"}, "prefix_length": 127, "public_ip_address_version": "IPv6"}
    ).result()
    assert _in_doc_ranges(ipaddress.ip_network(v6.ip_prefix))

    for bad_len in (27, 32):
        with pytest.raises(HttpResponseError) as e:
            network.public_ip_prefixes.begin_create_or_update(
                rg, f"bad{bad_len}", {"location": LOCATION, "sku": {"name": "Standard"}, "prefix_length": bad_len}
            ).result()
        assert e.value.error.code == "SpecifiedPrefixLengthNotSupported"

    current = network.public_ip_prefixes.get(rg, "pfx")
    current.prefix_length = 29
    with pytest.raises(HttpResponseError) as e:
        network.public_ip_prefixes.begin_create_or_update(rg, "pfx", current).result()
    assert e.value.error.code == "PropertyChangeNotAllowed"
    current = network.public_ip_prefixes.get(rg, "pfx")
    current.ip_tags = []
    with pytest.raises(HttpResponseError) as e:
        network.public_ip_prefixes.begin_create_or_update(rg, "pfx", current).result()
    assert e.value.error.code == "PropertyChangeNotAllowed"

    pip = network.public_ip_addresses.begin_create_or_update(
        rg,
        "pip1",
        {
            "location": LOCATION,
            "sku": {"name": "Standard"},
            "public_ip_allocation_method": "Static",
            "public_ip_prefix": {"id": prefix.id},
            "ip_tags": [{"ip_tag_type": "RoutingPreference", "tag": "Internet"}],
        },
    ).result()
    assert ipaddress.ip_address(pip.ip_address) in net
    standalone = network.public_ip_addresses.begin_create_or_update(
        rg, "pip2", {"location": LOCATION, "sku": {"name": "Standard"}, "public_ip_allocation_method": "Static"}
    ).result()
    assert _in_doc_ranges(ipaddress.ip_network(standalone.ip_address))
    assert {p.name for p in network.public_ip_addresses.list(rg)} == {"pip1", "pip2"}
    assert pip.id in [p.id for p in network.public_ip_addresses.list_all()]
    assert network.public_ip_prefixes.get(rg, "pfx").public_ip_addresses[0].id == pip.id
    assert network.public_ip_addresses.update_tags(rg, "pip1", {"tags": {"x": "y"}}).tags == {"x": "y"}

    with pytest.raises(HttpResponseError) as e:
        network.public_ip_addresses.begin_create_or_update(
            rg, "dyn", {"location": LOCATION, "sku": {"name": "Standard"}, "public_ip_allocation_method": "Dynamic"}
        ).result()
    assert e.value.error.code == "StandardSkuPublicIPAddressesMustBeStatic"

    with pytest.raises(HttpResponseError) as e:
        network.public_ip_prefixes.begin_delete(rg, "pfx").result()
    assert e.value.error.code == "InUsePublicIpPrefixCannotBeDeleted"
    network.public_ip_addresses.begin_delete(rg, "pip1").result()
    network.public_ip_addresses.begin_delete(rg, "pip2").result()
    network.public_ip_prefixes.begin_delete(rg, "pfx").result()
    network.public_ip_prefixes.begin_delete(rg, "pfx6").result()
    assert list(network.public_ip_prefixes.list(rg)) == []


def test_route_table_and_routes(network, rg):
    rt = network.route_tables.begin_create_or_update(
        rg,
        "rt1",
        {
            "location": LOCATION,
            "routes": [{"name": "default", "address_prefix": "0.0.0.0/0", "next_hop_type": "Internet"}],
        },
    ).result()
    assert rt.routes[0].next_hop_type == "Internet" and rt.routes[0].etag == rt.etag
    route = network.routes.begin_create_or_update(
        rg,
        "rt1",
        "pods-node0",
        {"address_prefix": "10.244.0.0/24", "next_hop_type": "VirtualAppliance", "next_hop_ip_address": "10.240.0.4"},
    ).result()
    assert route.next_hop_ip_address == "10.240.0.4"
    assert sorted(r.name for r in network.routes.list(rg, "rt1")) == ["default", "pods-node0"]
    assert network.routes.get(rg, "rt1", "pods-node0").address_prefix == "10.244.0.0/24"
    assert [t.name for t in network.route_tables.list(rg)] == ["rt1"]
    assert rt.id in [t.id for t in network.route_tables.list_all()]
    assert network.route_tables.update_tags(rg, "rt1", {"tags": {"k": "v"}}).tags == {"k": "v"}

    with pytest.raises(HttpResponseError) as e:
        network.routes.begin_create_or_update(
            rg, "rt1", "nohop", {"address_prefix": "10.9.0.0/16", "next_hop_type": "VirtualAppliance"}
        ).result()
    assert e.value.status_code == 400
    with pytest.raises(HttpResponseError) as e:
        network.routes.begin_create_or_update(rg, "rt1", "dup", {"address_prefix": "0.0.0.0/0", "next_hop_type": "None"}).result()
    assert e.value.error.code == "RouteConflict"

    network.routes.begin_delete(rg, "rt1", "pods-node0").result()
    assert [r.name for r in network.routes.list(rg, "rt1")] == ["default"]
    network.route_tables.begin_delete(rg, "rt1").result()


def test_virtual_network_subnets_and_associations(network, rg):
    nsg = network.network_security_groups.begin_create_or_update(rg, "nsg-sn", {"location": LOCATION}).result()
    rt = network.route_tables.begin_create_or_update(rg, "rt-sn", {"location": LOCATION}).result()
    vnet = network.virtual_networks.begin_create_or_update(
        rg,
        "vnet1",
        {
            "location": LOCATION,
            "address_space": {"address_prefixes": ["10.10.0.0/16"]},
            "subnets": [{"name": "nodes", "address_prefix": "10.10.0.0/24"}],
        },
    ).result()
    assert vnet.subnets[0].name == "nodes"
    sn = network.subnets.begin_create_or_update(
        rg,
        "vnet1",
        "apiserver",
        {
            "address_prefix": "10.10.1.0/28",
            "network_security_group": {"id": nsg.id},
            "route_table": {"id": rt.id},
            "delegations": [{"name": "aks", "service_name": "Microsoft.ContainerService/managedClusters"}],
        },
    ).result()
    assert sn.network_security_group.id == nsg.id
    assert sn.delegations[0].service_name == "Microsoft.ContainerService/managedClusters"
    assert sorted(s.name for s in network.subnets.list(rg, "vnet1")) == ["apiserver", "nodes"]
    assert network.subnets.get(rg, "vnet1", "apiserver").route_table.id == rt.id
    assert [s.id for s in network.network_security_groups.get(rg, "nsg-sn").subnets] == [sn.id]
    assert [s.id for s in network.route_tables.get(rg, "rt-sn").subnets] == [sn.id]
    assert [v.name for v in network.virtual_networks.list(rg)] == ["vnet1"]
    assert vnet.id in [v.id for v in network.virtual_networks.list_all()]
    assert network.virtual_networks.update_tags(rg, "vnet1", {"tags": {"t": "1"}}).tags == {"t": "1"}

    with pytest.raises(HttpResponseError) as e:
        network.network_security_groups.begin_delete(rg, "nsg-sn").result()
    assert e.value.error.code == "InUseNetworkSecurityGroupCannotBeDeleted"
    with pytest.raises(HttpResponseError) as e:
        network.route_tables.begin_delete(rg, "rt-sn").result()
    assert e.value.error.code == "InUseRouteTableCannotBeDeleted"
    with pytest.raises(HttpResponseError) as e:
        network.subnets.begin_create_or_update(rg, "vnet1", "outside", {"address_prefix": "10.20.0.0/24"}).result()
    assert e.value.error.code == "NetcfgSubnetRangeOutsideVnet"
    with pytest.raises(HttpResponseError) as e:
        network.subnets.begin_create_or_update(rg, "vnet1", "overlap", {"address_prefix": "10.10.0.128/25"}).result()
    assert e.value.error.code == "NetcfgSubnetRangesOverlap"
    with pytest.raises(HttpResponseError) as e:
        network.subnets.begin_create_or_update(
            rg, "vnet1", "badref", {"address_prefix": "10.10.2.0/24", "network_security_group": {"id": nid(rg, "networkSecurityGroups", "ghost")}}
        ).result()
    assert e.value.error.code == "InvalidResourceReference"

    network.subnets.begin_delete(rg, "vnet1", "apiserver").result()
    network.network_security_groups.begin_delete(rg, "nsg-sn").result()
    network.virtual_networks.begin_delete(rg, "vnet1").result()
    network.route_tables.begin_delete(rg, "rt-sn").result()


def test_fixture_aks_nsg_has_foreign_rules(network):
    nsg = network.network_security_groups.get("MC_rg-poolnet-demo_aks-demo_westeurope", "aks-agentpool-47472799-nsg")
    foreign = [r for r in nsg.security_rules if r.name.startswith("k8s-azure-lb_")]
    assert len(foreign) == 2 and all(r.priority >= 500 for r in foreign)
    rt = network.route_tables.get("rg-poolnet-demo", "rt-kubenet")
    # Pod routes the cloud provider maintains (kubenet), one per node of both pools.
    assert len([r for r in rt.routes if r.name.startswith("aks-")]) == 5
    assert SUB in rt.id

"""ARM semantics the SDK relies on: ETag preconditions, LRO cancellation, errors, paging,
throttling headers, auth, api-version checks, resource groups."""

import time

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.network import NetworkManagementClient

from conftest import LOCATION, SUB, StaticCredential


def test_etag_if_match_and_if_none_match(network, rg):
    nsg = network.network_security_groups.begin_create_or_update(rg, "etag-nsg", {"location": LOCATION}).result()
    # Correct ETag: accepted.
    network.network_security_groups.begin_create_or_update(
        rg, "etag-nsg", nsg, headers={"If-Match": nsg.etag}
    ).result()
    # Stale ETag (the PUT above changed it): 412 PreconditionFailed.
    with pytest.raises(HttpResponseError) as e:
        network.network_security_groups.begin_create_or_update(rg, "etag-nsg", nsg, headers={"If-Match": nsg.etag})
    assert e.value.status_code == 412
    assert e.value.error.code == "PreconditionFailed"
    # If-None-Match: * on an existing resource: 412.
    with pytest.raises(HttpResponseError) as e:
        network.network_security_groups.begin_create_or_update(rg, "etag-nsg", nsg, headers={"If-None-Match": "*"})
    assert e.value.status_code == 412
    # The Network spec declares no If-Match parameter for these operations, so the SDK takes
    # the headers through `headers=` rather than `etag=` / `match_condition=`.
    fresh = network.network_security_groups.get(rg, "etag-nsg")
    rule = {"priority": 100, "direction": "Inbound", "access": "Allow", "protocol": "Tcp", "source_address_prefix": "*",
            "source_port_range": "*", "destination_address_prefix": "*", "destination_port_range": "80"}
    network.security_rules.begin_create_or_update(rg, "etag-nsg", "r", rule, headers={"If-None-Match": "*"}).result()
    with pytest.raises(HttpResponseError) as e:
        network.security_rules.begin_create_or_update(rg, "etag-nsg", "r", rule, headers={"If-Match": fresh.etag})
    assert e.value.status_code == 412


def test_other_writer_makes_if_match_put_fail(network, control, rg):
    nsg_id = f"/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Network/networkSecurityGroups/shared"
    network.network_security_groups.begin_create_or_update(rg, "shared", {"location": LOCATION}).result()
    control.send("POST", "faults/other-writers", {
        "resource_id": nsg_id,
        "after_gets": 1,
        "action": {"kind": "upsert_security_rule", "rule": {"name": "k8s-azure-lb_allow_x", "properties": {
            "priority": 500, "direction": "Inbound", "access": "Allow", "protocol": "Tcp", "sourceAddressPrefix": "Internet",
            "sourcePortRange": "*", "destinationAddressPrefix": "192.0.2.20", "destinationPortRange": "443"}}},
    })
    seen = network.network_security_groups.get(rg, "shared")
    with pytest.raises(HttpResponseError) as e:
        network.network_security_groups.begin_create_or_update(rg, "shared", seen, headers={"If-Match": seen.etag})
    assert e.value.status_code == 412
    again = network.network_security_groups.get(rg, "shared")
    assert [r.name for r in again.security_rules] == ["k8s-azure-lb_allow_x"]
    network.network_security_groups.begin_create_or_update(rg, "shared", again, headers={"If-Match": again.etag}).result()
    control.send("DELETE", "faults")


def test_put_on_updating_resource_cancels_earlier_operation(network, control, live_config, rg):
    slow = dict(live_config)
    slow["lro"] = dict(live_config["lro"], network_ms=800)
    control.send("PUT", "config", slow)
    first = network.network_security_groups.begin_create_or_update(rg, "lro-nsg", {"location": LOCATION, "tags": {"v": "1"}})
    second = network.network_security_groups.begin_create_or_update(rg, "lro-nsg", {"location": LOCATION, "tags": {"v": "2"}})
    with pytest.raises(HttpResponseError) as e:
        first.result()
    assert e.value.error.code == "CanceledAndSupersededDueToAnotherOperation"
    assert second.result().tags == {"v": "2"}


def test_provisioning_state_goes_updating_then_succeeded(control, live_config, rg):
    slow = dict(live_config)
    slow["lro"] = dict(live_config["lro"], network_ms=300)
    control.send("PUT", "config", slow)
    path = f"/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Network/applicationSecurityGroups/lro-asg"
    r = control.arm("PUT", path, {"location": LOCATION})
    assert r.status_code == 201
    assert r.json()["properties"]["provisioningState"] == "Updating"
    assert "Azure-AsyncOperation" in r.headers and "Retry-After" in r.headers
    op_url = r.headers["Azure-AsyncOperation"]
    status = control.arm("GET", op_url.split("?")[0].replace(control.url, "")).json()
    assert status["status"] == "InProgress"
    time.sleep(0.5)
    assert control.arm("GET", op_url.split("?")[0].replace(control.url, "")).json()["status"] == "Succeeded"
    assert control.arm("GET", path).json()["properties"]["provisioningState"] == "Succeeded"
    d = control.arm("DELETE", path)
    assert d.status_code == 202 and "Location" in d.headers
    loc = d.headers["Location"].split("?")[0].replace(control.url, "")
    assert control.arm("GET", loc).status_code == 202
    time.sleep(0.5)
    assert control.arm("GET", loc).status_code in (200, 204)
    assert control.arm("DELETE", path).status_code == 204


def test_errors_carry_azure_codes(network, armsim_url, ca_file):
    with pytest.raises(ResourceNotFoundError) as e:
        network.network_security_groups.get("rg-poolnet-demo", "does-not-exist")
    assert e.value.error.code == "ResourceNotFound"
    with pytest.raises(ResourceNotFoundError) as e:
        network.network_security_groups.get("no-such-rg", "x")
    assert e.value.error.code == "ResourceGroupNotFound"
    other = NetworkManagementClient(
        StaticCredential(), "99999999-0000-0000-0000-000000000000", api_version="2024-03-01",
        base_url=armsim_url, connection_verify=ca_file,
    )
    with pytest.raises(HttpResponseError) as e:
        other.network_security_groups.get("rg", "x")
    assert e.value.error.code == "SubscriptionNotFound"


def test_api_version_and_auth(control):
    path = f"/subscriptions/{SUB}/resourceGroups/rg-poolnet-demo/providers/Microsoft.Network/networkSecurityGroups/nsg-snet-aks"
    assert control.arm("GET", path).status_code == 200
    r = control.arm("GET", path, api="2099-01-01")
    assert r.status_code == 400 and r.json()["error"]["code"] == "NoRegisteredProviderFound"
    r = control.arm("GET", path, api="yesterday")
    assert r.status_code == 400 and r.json()["error"]["code"] == "InvalidApiVersionParameter"
    import requests
    r = requests.get(f"{control.url}{path}?api-version=2024-03-01", verify=control.ca, timeout=10)
    assert r.status_code == 401 and r.json()["error"]["code"] == "AuthenticationFailed"


def test_paging_follows_next_link(network, control, live_config, rg):
    small = dict(live_config)
    small["paging"] = {"page_size": 3}
    control.send("PUT", "config", small)
    for i in range(7):
        network.application_security_groups.begin_create_or_update(rg, f"asg{i}", {"location": LOCATION}).result()
    raw = control.arm("GET", f"/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Network/applicationSecurityGroups").json()
    assert len(raw["value"]) == 3 and "nextLink" in raw
    assert sorted(a.name for a in network.application_security_groups.list(rg)) == [f"asg{i}" for i in range(7)]


def test_throttling_429_and_headers(control, live_config):
    path = f"/subscriptions/{SUB}/resourceGroups/rg-poolnet-demo/providers/Microsoft.Network/routeTables/rt-kubenet"
    r = control.arm("GET", path)
    assert "x-ms-ratelimit-remaining-subscription-reads" in r.headers
    tight = dict(live_config)
    tight["throttling"] = dict(live_config["throttling"], read_capacity=3, read_refill_per_sec=0.5)
    control.send("PUT", "config", tight)
    codes = [control.arm("GET", path) for _ in range(5)]
    assert [c.status_code for c in codes[:3]] == [200, 200, 200]
    throttled = codes[3]
    assert throttled.status_code == 429
    assert throttled.json()["error"]["code"] == "SubscriptionRequestsThrottled"
    assert int(throttled.headers["Retry-After"]) >= 1


def test_injected_faults_are_seeded_and_counted(network, control):
    before = control.get("counters")
    control.send("POST", "faults/rules", {
        "method": "GET", "resource_type": "routeTables", "count": 1,
        "action": {"kind": "error", "status": 503, "code": "ServiceUnavailable"},
    })
    # azure-core retries a 503, so the SDK call still succeeds; armsim counted both requests.
    network.route_tables.get("rg-poolnet-demo", "rt-kubenet")
    after = control.get("counters")
    assert after["faults_injected"] == before["faults_injected"] + 1
    gets = after["requests"]["GET"]["Microsoft.Network/routeTables"] - before["requests"].get("GET", {}).get("Microsoft.Network/routeTables", 0)
    assert gets == 2
    control.send("DELETE", "faults")


def test_resource_groups(resources):
    name = "rg-conf-groups"
    created = resources.resource_groups.create_or_update(name, {"location": "West Europe", "tags": {"a": "1"}})
    assert created.location == "westeurope" and created.tags == {"a": "1"}
    assert resources.resource_groups.check_existence(name)
    assert name in [g.name for g in resources.resource_groups.list()]
    assert resources.resource_groups.get(name).properties.provisioning_state == "Succeeded"
    resources.resource_groups.begin_delete(name).result()
    assert not resources.resource_groups.check_existence(name)
    with pytest.raises(ResourceNotFoundError) as e:
        resources.resource_groups.get(name)
    assert e.value.error.code == "ResourceGroupNotFound"

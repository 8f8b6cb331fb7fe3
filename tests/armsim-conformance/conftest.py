"""Fixtures: SDK clients pointed at armsim over HTTPS with its generated CA."""

import os
import time
import uuid

import pytest
import requests
from azure.core.credentials import AccessToken
from azure.mgmt.containerservice import ContainerServiceClient
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient

SUB = "00000000-1111-2222-3333-444444444444"
RG = "rg-poolnet-demo"
NODE_RG = "MC_rg-poolnet-demo_aks-demo_westeurope"
LOCATION = "westeurope"
CLUSTER = "aks-demo"
VMSS_DIGITS = "47472799"


class StaticCredential:
    """Any non-empty bearer token is accepted by armsim."""

    def get_token(self, *scopes, **kwargs):
        return AccessToken("armsim-conformance-token", int(time.time()) + 3600)


def _env(name):
    value = os.environ.get(name)
    if not value:
        pytest.exit(f"{name} is not set: run tests/armsim-conformance/run.sh", returncode=2)
    return value


@pytest.fixture(scope="session")
def armsim_url():
    return _env("ARMSIM_URL")


@pytest.fixture(scope="session")
def ca_file():
    return _env("ARMSIM_CA")


def _kwargs(url, ca):
    return dict(base_url=url, connection_verify=ca, polling_interval=0.02)


@pytest.fixture(scope="session")
def network(armsim_url, ca_file):
    # azure-mgmt-network 27.0.0 sends 2024-03-01 for every Microsoft.Network operation and the
    # spec-pinned 2018-10-01 for the VMSS public-IP / NIC listings; passing api_version here
    # would force 2024-03-01 onto those too, which the service does not serve.
    return NetworkManagementClient(StaticCredential(), SUB, **_kwargs(armsim_url, ca_file))


@pytest.fixture(scope="session")
def aks(armsim_url, ca_file):
    return ContainerServiceClient(StaticCredential(), SUB, api_version="2024-02-01", **_kwargs(armsim_url, ca_file))


@pytest.fixture(scope="session")
def resources(armsim_url, ca_file):
    return ResourceManagementClient(StaticCredential(), SUB, **_kwargs(armsim_url, ca_file))


class Control:
    """The armsim control API (/_armsim/...)."""

    def __init__(self, url, ca):
        self.url = url
        self.ca = ca

    def get(self, path):
        r = requests.get(f"{self.url}/_armsim/{path}", verify=self.ca, timeout=10)
        r.raise_for_status()
        return r.json()

    def send(self, method, path, body=None):
        r = requests.request(method, f"{self.url}/_armsim/{path}", json=body, verify=self.ca, timeout=10)
        r.raise_for_status()
        return r.json()

    def arm(self, method, path, body=None, headers=None, api="2024-03-01"):
        """A raw ARM call, for behaviour the SDK hides (headers, status codes)."""
        h = {"Authorization": "Bearer raw"}
        h.update(headers or {})
        sep = "&" if "?" in path else "?"
        return requests.request(
            method, f"{self.url}{path}{sep}api-version={api}", json=body, headers=h, verify=self.ca, timeout=10
        )


@pytest.fixture(scope="session")
def control(armsim_url, ca_file):
    return Control(armsim_url, ca_file)


@pytest.fixture
def live_config(control):
    """Lets a test change armsim's live configuration and restores it afterwards."""
    saved = control.get("config")
    yield saved
    control.send("PUT", "config", saved)


@pytest.fixture
def rg(resources):
    """A fresh resource group per test, deleted afterwards."""
    name = f"rg-conf-{uuid.uuid4().hex[:8]}"
    resources.resource_groups.create_or_update(name, {"location": LOCATION})
    yield name
    resources.resource_groups.begin_delete(name).result()


def nid(rg, kind, name):
    return f"/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Network/{kind}/{name}"

"""Certificate-bound tokens (RFC 8705) end to end, real parts only (issue 27, items 1 and 5):
nanoidp issues a token whose `cnf.x5t#S256` names a client certificate made here with openssl
(through nanoidp's `extra` claims, standing in for an authorization server that saw the
certificate on its own mutual-TLS token endpoint). The gateway takes the token only over a TLS
connection whose verified client certificate has that thumbprint; and behind HAProxy running
deploy/haproxy-client-cert.cfg live (TLS and the certificate check at HAProxy), only with the
RFC 9440 `Client-Cert` field HAProxy writes from the certificate it verified. Nothing of either
reaches the upstream."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from interop_stack import Process, free_port
from test_audit import INITIALIZE
from test_gateway import ACCEPT
from test_tls import Certificates

DEPLOY = Path(__file__).resolve().parent.parent.parent / "deploy"

RESOURCES = """
authorization_servers:
  nanoidp:
    issuer: {nanoidp}
resources:
  - path: /mcp
    authorization_server: nanoidp
    upstream: {upstream}/mcp
    methods: &methods {{ initialize: [], notifications/*: [], tools/list: [], ping: [] }}
  - path: /required/mcp
    authorization_server: nanoidp
    upstream: {upstream}/mcp
    sender_constraint: required
    methods: *methods
"""

DIRECT = """
listen: 127.0.0.1:{port}
public_url: https://localhost:{port}
tls:
  certificate: {cert}
  private_key: {key}
  reload_interval_seconds: 0
  client_ca: {ca}
  client_verify: optional
audit:
  file: {audit}
""" + RESOURCES

BEHIND_HAPROXY = """
listen: 127.0.0.1:{port}
public_url: https://localhost:{public_port}
trusted_proxies: [127.0.0.1/32]
client_certificate_header: Client-Cert
audit:
  file: {audit}
""" + RESOURCES


def thumbprint(cert: str) -> str:
    der = subprocess.run(["openssl", "x509", "-in", cert, "-outform", "DER"], capture_output=True, check=True).stdout
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def bound(stack, bouncer_bin, tmp_path_factory):
    if shutil.which("haproxy") is None:
        pytest.fail("haproxy comes from scripts/test")
    work = tmp_path_factory.mktemp("cert-bound")
    certs = Certificates(work)
    server_cert, server_key = certs.leaf("gateway", "localhost", "DNS:localhost,IP:127.0.0.1")
    agent = certs.leaf("agent", "agent-1", "DNS:agent-1")
    other = certs.leaf("other-agent", "agent-2", "DNS:agent-2")
    processes = []
    try:
        direct_port = free_port()
        (work / "direct.yaml").write_text(DIRECT.format(port=direct_port, cert=server_cert, key=server_key, ca=certs.ca, audit=work / "direct.jsonl",
                                                        nanoidp=stack.nanoidp, upstream=stack.upstream))
        direct = Process("cert-gateway", [bouncer_bin, "run", "--config", str(work / "direct.yaml")], work)
        processes.append(direct)
        direct.wait_for(f"https://localhost:{direct_port}/healthz", verify=certs.ca)

        behind_port, public_port = free_port(), free_port()
        (work / "behind.yaml").write_text(BEHIND_HAPROXY.format(port=behind_port, public_port=public_port, audit=work / "behind.jsonl",
                                                                nanoidp=stack.nanoidp, upstream=stack.upstream))
        behind = Process("cert-gateway-behind", [bouncer_bin, "run", "--config", str(work / "behind.yaml")], work)
        processes.append(behind)
        behind.wait_for(f"http://127.0.0.1:{behind_port}/healthz")
        bundle = work / "haproxy.pem"
        bundle.write_text(Path(server_cert).read_text() + Path(server_key).read_text())
        config = (DEPLOY / "haproxy-client-cert.cfg").read_text()
        # Loopback ports, the certificates made here, one replica; maxconn within this
        # machine's file descriptor limit. The rules (what is verified, removed and set) as shipped.
        config = (config.replace("bind :443", f"bind 127.0.0.1:{public_port}").replace("maxconn 20000", "maxconn 1000")
                  .replace("/etc/haproxy/certs/mcp.example.com.pem", str(bundle)).replace("/etc/haproxy/certs/client-ca.pem", certs.ca)
                  .replace("10.0.1.11:8080", f"127.0.0.1:{behind_port}"))
        config = "\n".join(line for line in config.splitlines() if "10.0.1.12" not in line) + "\n"
        (work / "haproxy.cfg").write_text(config)
        balancer = Process("cert-haproxy", ["haproxy", "-f", str(work / "haproxy.cfg"), "-db"], work)
        processes.append(balancer)
        balancer.wait_for(f"https://localhost:{public_port}/healthz", verify=certs.ca)
        yield {"direct": f"https://localhost:{direct_port}", "behind": f"https://localhost:{public_port}", "ca": certs.ca,
               "agent": agent, "other": other, "work": work}
    finally:
        for process in reversed(processes):
            process.stop()


def cert_bound_token(stack, resource: str, cert: str) -> str:
    response = httpx.post(f"{stack.nanoidp}/token", auth=("demo-client", "demo-secret"),
                          data={"grant_type": "client_credentials", "resource": resource, "extra": json.dumps({"cnf": {"x5t#S256": thumbprint(cert)}})})
    response.raise_for_status()
    return response.json()["access_token"]


def initialize(url: str, token: str | None, ca: str, cert: tuple[str, str] | None, extra: dict | None = None) -> httpx.Response:
    headers = {"Accept": ACCEPT, "Content-Type": "application/json", **(extra or {})}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    context = ssl.create_default_context(cafile=ca)
    if cert:
        context.load_cert_chain(*cert)
    with httpx.Client(verify=context, timeout=30) as client:
        return client.post(url, headers=headers, content=json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": INITIALIZE}))


@pytest.mark.parametrize("where", ["direct", "behind"])
def test_a_certificate_bound_token_works_only_over_its_certificate(stack, bound, where):
    url = bound[where] + "/mcp"
    token = cert_bound_token(stack, url, bound["agent"][0])
    before = len(stack.upstream_requests())
    ok = initialize(url, token, bound["ca"], bound["agent"])
    assert ok.status_code == 200, ok.text
    assert "\"result\"" in ok.text, ok.text
    # Another client's certificate, and none: the same token is refused, nothing forwarded.
    for cert in (bound["other"], None):
        refused = initialize(url, token, bound["ca"], cert)
        assert refused.status_code == 401, refused.text
        assert 'error="invalid_token"' in refused.headers["www-authenticate"], refused.headers
    if where == "behind":
        # A Client-Cert the client writes itself is removed by HAProxy: the agent's certificate
        # in the field, without the TLS handshake to back it, opens nothing.
        der = subprocess.run(["openssl", "x509", "-in", bound["agent"][0], "-outform", "DER"], capture_output=True, check=True).stdout
        forged = initialize(url, token, bound["ca"], None, {"Client-Cert": f":{base64.b64encode(der).decode()}:"})
        assert forged.status_code == 401, forged.text
    upstream = stack.upstream_requests()[before:]
    assert len(upstream) == 1, upstream
    assert not {"client-cert", "client-cert-chain", "authorization"} & set(upstream[0]["headers"]), upstream[0]["headers"]

    # The audit trail says how the token was bound, and to which certificate.
    audit = bound["work"] / f"{where}.jsonl"
    deadline = time.monotonic() + 10
    records: list[dict] = []
    while time.monotonic() < deadline and not any(r.get("token_binding") == "mtls" for r in records):
        records = [json.loads(line) for line in audit.read_text().splitlines()] if audit.exists() else []
        time.sleep(0.1)
    bound_records = [r for r in records if r.get("token_binding") == "mtls"]
    assert bound_records and bound_records[0]["token_binding_key"] == thumbprint(bound["agent"][0]), records


def test_sender_constraint_required_refuses_a_plain_bearer_token(stack, bound):
    url = bound["direct"] + "/required/mcp"
    plain = httpx.post(f"{stack.nanoidp}/token", auth=("demo-client", "demo-secret"), data={"grant_type": "client_credentials", "resource": url}).json()["access_token"]
    refused = initialize(url, plain, bound["ca"], bound["agent"])
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("DPoP "), refused.headers
    bound_token = cert_bound_token(stack, url, bound["agent"][0])
    assert initialize(url, bound_token, bound["ca"], bound["agent"]).status_code == 200

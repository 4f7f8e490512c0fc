"""TLS with the system OpenSSL, against real peers: openssl s_client, curl, the MCP Python SDK
client, and an https upstream (uvicorn's TLS in front of the SDK server)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.streamable_http import streamable_http_client

from interop_stack import HERE, Process, free_port
from test_gateway import MemoryStorage, challenge_params


def openssl(*args: str) -> str:
    return subprocess.run(["openssl", *args], check=True, capture_output=True, text=True).stdout


class Certificates:
    """A CA and leaf certificates made at test time."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.ca = self.path("ca.pem")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=interop CA",
                "-keyout", self.path("ca.key"), "-out", self.ca, "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def path(self, name: str) -> str:
        return str(self.dir / name)

    def leaf(self, name: str, cn: str, sans: str, key: str = "ec") -> tuple[str, str]:
        key_args = ["-newkey", "rsa:2048"] if key == "rsa" else ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        openssl("req", *key_args, "-nodes", "-subj", f"/CN={cn}", "-keyout", self.path(f"{name}.key"), "-out", self.path(f"{name}.csr"))
        Path(self.path(f"{name}.ext")).write_text(f"subjectAltName={sans}\nbasicConstraints=CA:FALSE\n")
        openssl("x509", "-req", "-in", self.path(f"{name}.csr"), "-CA", self.ca, "-CAkey", self.path("ca.key"), "-CAcreateserial",
                "-days", "2", "-extfile", self.path(f"{name}.ext"), "-out", self.path(f"{name}.pem"))
        return self.path(f"{name}.pem"), self.path(f"{name}.key")


TLS_POLICY = """
listen: 127.0.0.1:{port}
public_url: https://localhost:{port}
tls:
  certificate: {cert}
  private_key: {key}
  reload_interval_seconds: 0
  client_ca: {ca}
  client_verify: optional
  sni:
    - server_names: [other.test]
      certificate: {other_cert}
      private_key: {other_key}
audit:
  file: {audit}
authorization_servers:
  authgent:
    issuer: {authgent}
resources:
  - path: /mcp
    authorization_server: authgent
    scopes_supported: [jira:read]
    upstream: {upstream}/mcp
    methods: &methods
      initialize: []
      notifications/*: []
      tools/list: [jira:read]
      tools/call:
        list_issues: [jira:read]
  - path: /https-upstream/mcp
    authorization_server: authgent
    upstream: https://localhost:{tls_upstream_port}/mcp
    upstream_tls: {{ ca_file: {ca} }}
    methods: {{ initialize: [], notifications/*: [], tools/list: [jira:read] }}
  - path: /mtls-upstream/mcp
    authorization_server: authgent
    upstream: https://localhost:{mtls_upstream_port}/mcp
    upstream_tls: {{ ca_file: {ca}, client_certificate: {gateway_client_cert}, client_key: {gateway_client_key} }}
    methods: {{ initialize: [] }}
  - path: /mtls-without-cert/mcp
    authorization_server: authgent
    upstream: https://localhost:{mtls_upstream_port}/mcp
    upstream_tls: {{ ca_file: {ca} }}
    methods: {{ initialize: [] }}
  - path: /wrong-name/mcp
    authorization_server: authgent
    upstream: https://localhost:{tls_upstream_port}/mcp
    upstream_tls: {{ ca_file: {ca}, server_name: wrong.example.test }}
    methods: {{ initialize: [] }}
"""


@pytest.fixture(scope="module")
def tls(stack, tmp_path_factory):
    work = tmp_path_factory.mktemp("tls")
    certs = Certificates(work)
    cert, key = certs.leaf("gateway", "localhost", "DNS:localhost,IP:127.0.0.1", key="rsa")
    other_cert, other_key = certs.leaf("other", "other.test", "DNS:other.test")
    upstream_cert, upstream_key = certs.leaf("upstream", "localhost", "DNS:localhost,IP:127.0.0.1")
    # The files the gateway serves, so reload tests can replace them.
    live_cert, live_key = str(work / "live.pem"), str(work / "live.key")
    shutil.copy(cert, live_cert)
    shutil.copy(key, live_key)

    processes = []
    try:
        tls_upstream_port = free_port()
        upstream = Process("tls-upstream", [sys.executable, str(HERE / "servers" / "legacy_upstream.py"), "--port", str(tls_upstream_port),
                                            "--record", str(work / "tls-upstream.jsonl"), "--tls-cert", upstream_cert, "--tls-key", upstream_key], work)
        processes.append(upstream)
        upstream.wait_for(f"https://localhost:{tls_upstream_port}/none", verify=certs.ca)
        gateway_client_cert, gateway_client_key = certs.leaf("gateway-client", "mcp-bouncer", "DNS:mcp-bouncer")
        mtls_upstream_port = free_port()
        mtls = Process("mtls-upstream", [sys.executable, str(HERE / "servers" / "legacy_upstream.py"), "--port", str(mtls_upstream_port),
                                         "--record", str(work / "mtls-upstream.jsonl"), "--tls-cert", upstream_cert, "--tls-key", upstream_key,
                                         "--tls-client-ca", certs.ca], work)
        processes.append(mtls)
        mtls_context = ssl.create_default_context(cafile=certs.ca)
        mtls_context.load_cert_chain(gateway_client_cert, gateway_client_key)
        mtls.wait_for(f"https://localhost:{mtls_upstream_port}/none", verify=mtls_context)

        port = free_port()
        policy = work / "policy.yaml"
        policy.write_text(TLS_POLICY.replace("methods: &methods", "methods:").format(
            port=port, cert=live_cert, key=live_key, other_cert=other_cert, other_key=other_key, authgent=stack.authgent,
            upstream=stack.upstream, tls_upstream_port=tls_upstream_port, ca=certs.ca, mtls_upstream_port=mtls_upstream_port,
            gateway_client_cert=gateway_client_cert, gateway_client_key=gateway_client_key, audit=work / "audit.jsonl"))
        binary = os.environ.get("BOUNCER_BIN") or str(HERE.parent.parent / ".build" / "debug" / "mcp-bouncer")
        gateway = Process("tls-gateway", [binary, "run", "--config", str(policy)], work)
        processes.append(gateway)
        gateway.wait_for(f"https://localhost:{port}/healthz", verify=certs.ca)
        yield {"port": port, "url": f"https://localhost:{port}", "certs": certs, "gateway": gateway, "work": work,
               "live": (live_cert, live_key), "originals": (cert, key), "policy": policy, "binary": binary}
    finally:
        for process in reversed(processes):
            process.stop()


def s_client(port: int, *args: str) -> str:
    result = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *args], input="", capture_output=True, text=True, timeout=30)
    return result.stdout + result.stderr


def test_s_client_sees_tls13_alpn_and_a_verified_chain(tls):
    out = s_client(tls["port"], "-alpn", "http/1.1", "-CAfile", tls["certs"].ca, "-servername", "localhost")
    assert "New, TLSv1.3" in out
    assert "ALPN protocol: http/1.1" in out
    assert "Verify return code: 0 (ok)" in out


def test_tls12_uses_a_forward_secret_aead_cipher(tls):
    out = s_client(tls["port"], "-tls1_2", "-CAfile", tls["certs"].ca)
    assert "Protocol  : TLSv1.2" in out
    cipher = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.strip().startswith("Cipher    :"))
    assert cipher.startswith("ECDHE-") and ("GCM" in cipher or "CHACHA20" in cipher), cipher


def test_sni_selects_the_certificate(tls):
    assert "subject=CN = other.test" in s_client(tls["port"], "-servername", "other.test")
    assert "subject=CN = localhost" in s_client(tls["port"], "-servername", "localhost")


def test_curl_with_the_ca_works_and_tls11_is_refused(tls):
    ok = subprocess.run(["curl", "-sS", "--cacert", tls["certs"].ca, f"{tls['url']}/healthz"], capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0 and ok.stdout == "ok\n"
    old = subprocess.run(["curl", "-sS", "--tlsv1.1", "--tls-max", "1.1", "--cacert", tls["certs"].ca, f"{tls['url']}/healthz"],
                         capture_output=True, text=True, timeout=30)
    assert old.returncode != 0


def test_challenge_and_metadata_over_https(tls):
    response = httpx.post(f"{tls['url']}/mcp", verify=ssl.create_default_context(cafile=tls["certs"].ca), json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert response.status_code == 401
    assert challenge_params(response.headers["www-authenticate"])["resource_metadata"] == f"{tls['url']}/.well-known/oauth-protected-resource/mcp"
    document = httpx.get(f"{tls['url']}/.well-known/oauth-protected-resource/mcp", verify=ssl.create_default_context(cafile=tls["certs"].ca)).json()
    assert document["resource"] == f"{tls['url']}/mcp"


def test_mcp_sdk_client_over_https(tls, stack):
    client = stack.register_client("jira:read")
    url = f"{tls['url']}/mcp"
    context = ssl.create_default_context(cafile=tls["certs"].ca)

    async def main():
        auth = ClientCredentialsOAuthProvider(url, MemoryStorage(), client["client_id"], client["client_secret"], scope="jira:read", issuer=stack.authgent)
        async with httpx2.AsyncClient(auth=auth, verify=context) as http:
            async with streamable_http_client(url, http_client=http) as (read, write, *_):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    result = await session.call_tool("list_issues", {"project": "TLS"})
                    assert "TLS-1" in result.content[0].text

    anyio.run(main)


def _initialize(url: str, token: str, ca: str) -> httpx.Response:
    return httpx.post(url, verify=ssl.create_default_context(cafile=ca), headers={"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"},
                      json={"jsonrpc": "2.0", "id": 1, "method": "initialize",
                            "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})


def test_https_upstream_with_the_right_name_is_used(tls, stack):
    url = f"{tls['url']}/https-upstream/mcp"
    token = stack.authgent_token("jira:read", resource=url)
    response = _initialize(url, token, tls["certs"].ca)
    assert response.status_code == 200, response.text
    assert "mcp-session-id" in response.headers


def test_https_upstream_with_a_wrong_name_is_refused(tls, stack):
    url = f"{tls['url']}/wrong-name/mcp"
    token = stack.authgent_token("jira:read", resource=url)
    response = _initialize(url, token, tls["certs"].ca)
    assert response.status_code == 502
    log = tls["gateway"].log_path.read_text()
    assert "certificate verif" in log or "certificate verify failed" in log


def test_mtls_to_the_upstream(tls, stack):
    with_cert = f"{tls['url']}/mtls-upstream/mcp"
    response = _initialize(with_cert, stack.authgent_token("jira:read", resource=with_cert), tls["certs"].ca)
    assert response.status_code == 200, response.text
    without = f"{tls['url']}/mtls-without-cert/mcp"
    response = _initialize(without, stack.authgent_token("jira:read", resource=without), tls["certs"].ca)
    assert response.status_code == 502


def _serial(port: int, ca: str) -> str:
    out = s_client(port, "-servername", "localhost", "-CAfile", ca)
    pem = out[out.index("-----BEGIN CERTIFICATE-----"):out.index("-----END CERTIFICATE-----") + 25]
    return subprocess.run(["openssl", "x509", "-noout", "-serial"], input=pem, capture_output=True, text=True).stdout.strip()


def test_sighup_reloads_the_certificate_without_dropping_connections(tls):
    certs, port = tls["certs"], tls["port"]
    live_cert, live_key = tls["live"]
    before = _serial(port, certs.ca)
    with httpx.Client(verify=ssl.create_default_context(cafile=certs.ca)) as kept:
        assert kept.get(f"{tls['url']}/healthz").status_code == 200
        new_cert, new_key = certs.leaf("renewed", "localhost", "DNS:localhost,IP:127.0.0.1")
        shutil.copy(new_cert, live_cert)
        shutil.copy(new_key, live_key)
        os.kill(tls["gateway"].proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while _serial(port, certs.ca) == before and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _serial(port, certs.ca) != before
        # The connection opened before the reload is still served.
        assert kept.get(f"{tls['url']}/healthz").status_code == 200

    # A broken file: the gateway keeps serving the last good certificate and says why.
    current = _serial(port, certs.ca)
    Path(live_key).write_text("not a key\n")
    os.kill(tls["gateway"].proc.pid, signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "reload failed" not in tls["gateway"].log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "TLS certificate reload failed" in tls["gateway"].log_path.read_text()
    assert _serial(port, certs.ca) == current


def test_a_verified_client_certificate_reaches_the_request_path(tls):
    certs = tls["certs"]
    cert, key = certs.leaf("agent", "agent-1", "DNS:agent-1")
    der = subprocess.run(["openssl", "x509", "-in", cert, "-outform", "DER"], capture_output=True, check=True).stdout
    thumbprint = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()
    result = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", certs.ca, "--cert", cert, "--key", key,
                             "-X", "POST", "-H", "Content-Type: application/json", "-d", '{"jsonrpc":"2.0","id":1,"method":"ping"}',
                             f"{tls['url']}/mcp"], capture_output=True, text=True, timeout=30)
    assert result.stdout == "401"
    # The request's audit record carries the certificate's RFC 8705 x5t#S256 thumbprint.
    audit = tls["work"] / "audit.jsonl"
    deadline = time.monotonic() + 10
    records = []
    while time.monotonic() < deadline:
        records = [json.loads(line) for line in audit.read_text().splitlines()] if audit.exists() else []
        if any(r.get("client_cert") == thumbprint for r in records):
            break
        time.sleep(0.1)
    assert any(r.get("client_cert") == thumbprint and r["reason"] == "missing_token" for r in records), records
    # Without a certificate (optional mode) the request is still served.
    plain = subprocess.run(["curl", "-sS", "--cacert", certs.ca, f"{tls['url']}/healthz"], capture_output=True, text=True, timeout=30)
    assert plain.stdout == "ok\n"


def test_check_reports_a_key_that_does_not_match(tls, tmp_path):
    policy = tmp_path / "mismatch.yaml"
    cert, _ = tls["originals"]
    _, other_key = tls["certs"].leaf("mismatch", "localhost", "DNS:localhost")
    policy.write_text(f"""listen: 127.0.0.1:0
public_url: https://localhost:8443
tls:
  certificate: {cert}
  private_key: {other_key}
authorization_servers:
  a:
    issuer: http://127.0.0.1:1
resources:
  - path: /mcp
    authorization_server: a
    upstream: http://127.0.0.1:1/mcp
    methods: {{ initialize: [] }}
""")
    result = subprocess.run([tls["binary"], "check", str(policy)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "does not match the certificate" in result.stderr


def test_probe_verifies_tls(tls):
    """`mcp-bouncer probe` over https: with the CA the certificate verifies (the version is
    reported, no TLS finding); without it the handshake fails, a high finding."""
    url = f"{tls['url']}/mcp"
    trusted = subprocess.run([tls["binary"], "probe", url, "--format", "json", "--ca-file", tls["certs"].ca, "--fail-on", "never"],
                             capture_output=True, text=True, timeout=120)
    report = json.loads(trusted.stdout)["servers"][0]
    found = {finding["id"]: finding for finding in report["findings"]}
    assert "tls.handshake-failed" not in found and "tls.plain-http" not in found, found
    assert found["tls.version"]["detail"].startswith("TLSv1.3"), found["tls.version"]
    assert "auth.challenge.missing" not in found and "prm.resource-mismatch" not in found, found
    untrusted = subprocess.run([tls["binary"], "probe", url, "--format", "json"], capture_output=True, text=True, timeout=120)
    assert untrusted.returncode == 1
    report = json.loads(untrusted.stdout)["servers"][0]
    assert [finding["id"] for finding in report["findings"]] == ["tls.handshake-failed"], report

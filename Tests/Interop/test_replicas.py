"""Replicas behind a real load balancer, and policy reloads under load.

HAProxy (the Debian package) round-robins over two mcp-bouncer processes that share session
keys, in front of one MCP Python SDK upstream: the SDK client's session works across both,
another user's token with the same session id is refused by both (nothing reaches the
upstream), and a replica restarted with the same keys keeps serving the session. Then wrk runs
against a gateway while its policy file changes 20 times.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import anyio
import httpx
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.streamable_http import streamable_http_client

from interop_stack import Process, free_port
from test_gateway import ACCEPT, MemoryStorage, rpc

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None or shutil.which("wrk") is None, reason="haproxy and wrk come from scripts/test")

REPLICA_POLICY = """
listen: 127.0.0.1:{port}
public_url: {public_url}
trusted_proxies: [127.0.0.1/32]
sessions:
  keys:
    - {{ id: k1, secret: "${{file:{key}}}" }}
audit:
  file: {audit}
authorization_servers:
  authgent:
    issuer: {authgent}
    algorithms: [ES256]
resources:
  - path: /jira/mcp
    authorization_server: authgent
    scopes_supported: [jira:read]
    upstream: {upstream}/mcp
    methods:
      initialize: []
      notifications/*: []
      ping: []
      tools/list: [jira:read]
      tools/call:
        list_issues: [jira:read]
        create_issue: [{create_scope}]
"""

HAPROXY = """
global
  maxconn 2000
defaults
  mode http
  option forwardfor
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend mcp
  bind 127.0.0.1:{port}
  default_backend gateways
backend gateways
  balance roundrobin
{servers}
"""


class Replicas:
    def __init__(self, stack, binary: str, work: Path):
        self.stack = stack
        self.binary = binary
        self.work = work
        self.key = work / "session.key"
        self.key.write_text(subprocess.run([binary, "sessions", "keygen"], check=True, capture_output=True, text=True).stdout)
        self.lb_port = free_port()
        self.public_url = f"http://127.0.0.1:{self.lb_port}"
        self.ports = [free_port(), free_port()]
        self.processes: dict[str, Process] = {}

    def audit(self, index: int) -> Path:
        return self.work / f"audit-{index}.jsonl"

    def start_replica(self, index: int) -> None:
        policy = self.work / f"replica-{index}.yaml"
        policy.write_text(REPLICA_POLICY.format(port=self.ports[index], public_url=self.public_url, key=self.key, audit=self.audit(index),
                                                authgent=self.stack.authgent, upstream=self.stack.upstream, create_scope="jira:write"))
        process = Process(f"replica-{index}", [self.binary, "run", "--config", str(policy)], self.work)
        self.processes[f"replica-{index}"] = process
        process.wait_for(f"http://127.0.0.1:{self.ports[index]}/healthz")
        deadline = time.monotonic() + 30
        while httpx.get(f"http://127.0.0.1:{self.ports[index]}/readyz").status_code != 200:
            assert time.monotonic() < deadline, process.log_path.read_text()
            time.sleep(0.2)

    def stop_replica(self, index: int) -> None:
        self.processes.pop(f"replica-{index}").stop()

    def start(self) -> None:
        for index in range(2):
            self.start_replica(index)
        config = self.work / "haproxy.cfg"
        servers = "\n".join(f"  server g{index} 127.0.0.1:{port}" for index, port in enumerate(self.ports))
        config.write_text(HAPROXY.format(port=self.lb_port, servers=servers))
        check = subprocess.run(["haproxy", "-c", "-f", str(config)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        haproxy = Process("haproxy", ["haproxy", "-db", "-f", str(config)], self.work)
        self.processes["haproxy"] = haproxy
        haproxy.wait_for(f"{self.public_url}/healthz")

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()

    def requests(self, index: int, session: str | None = None) -> list[dict]:
        path = self.audit(index)
        if not path.exists():
            return []
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        digest = hashlib.sha256(session.encode()).hexdigest()[:16] if session else None
        return [r for r in records if r.get("event") == "request" and (digest is None or r.get("session") == digest)]


@pytest.fixture(scope="module")
def replicas(stack, bouncer_bin, tmp_path_factory):
    replicas = Replicas(stack, bouncer_bin, tmp_path_factory.mktemp("replicas"))
    try:
        replicas.start()
        yield replicas
    finally:
        replicas.stop()


def test_an_sdk_session_works_across_both_replicas(stack, replicas):
    client = stack.register_client("jira:read")
    url = f"{replicas.public_url}/jira/mcp"

    sessions: set[str] = set()

    async def remember_session(response):
        if "mcp-session-id" in response.headers:
            sessions.add(response.headers["mcp-session-id"])

    async def main():
        auth = ClientCredentialsOAuthProvider(url, MemoryStorage(), client["client_id"], client["client_secret"],
                                              scope="jira:read", issuer=stack.authgent)
        async with httpx2.AsyncClient(auth=auth, event_hooks={"response": [remember_session]}) as http:
            async with streamable_http_client(url, http_client=http) as (read, write, *_):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    for _ in range(4):
                        result = await session.call_tool("list_issues", {"project": "OPS"})
                        assert "OPS-1" in result.content[0].text
                    tools = await session.list_tools()
                    assert {t.name for t in tools.tools} == {"list_issues"}
                    # Time for the SDK's GET stream to be opened through the balancer.
                    await anyio.sleep(1.0)

    upstream_before = len(stack.upstream_requests())
    anyio.run(main)
    assert len(sessions) == 1, sessions
    sealed = sessions.pop()
    assert sealed.startswith("s1.k1."), sealed
    time.sleep(1.5)  # the audit writers' batches
    served = [replicas.requests(index, sealed) for index in range(2)]
    assert all(served), f"each replica served part of the session: {[len(s) for s in served]}"
    methods = {(r["http_method"], r["status"]) for records in served for r in records}
    assert ("GET", 200) in methods, methods
    assert any(method == "DELETE" and status < 300 for method, status in methods), methods
    assert all(r["decision"] == "allowed" for records in served for r in records)
    # The upstream saw one session id of its own, never the sealed one.
    seen = stack.upstream_requests()[upstream_before:]
    values = [r["headers"].get("mcp-session-id") for r in seen]
    ids = {value if isinstance(value, str) else tuple(value) for value in values if value}
    assert len(ids) == 1 and sealed not in ids and (sealed,) not in ids, ids


def test_another_users_token_with_the_session_is_refused_by_both_replicas(stack, replicas):
    url = f"{replicas.public_url}/jira/mcp"
    alice = stack.authgent_token("jira:read", resource=url)
    mallory = stack.authgent_token("jira:read", resource=url)  # another client: another subject
    response = rpc(stack, url, alice, "initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}})
    assert response.status_code == 200, response.text
    sealed = response.headers["mcp-session-id"]
    assert rpc(stack, url, alice, "tools/call", {"name": "list_issues", "arguments": {}}, session=sealed).status_code == 200
    before = len(stack.upstream_requests())
    for port in replicas.ports:
        direct = f"http://127.0.0.1:{port}/jira/mcp"
        refused = rpc(stack, direct, mallory, "tools/call", {"name": "list_issues", "arguments": {}}, session=sealed)
        assert refused.status_code == 404, refused.text
        assert refused.json()["error"]["code"] == -32001
        headers = {"Authorization": f"Bearer {mallory}", "Accept": ACCEPT, "Mcp-Session-Id": sealed, "MCP-Protocol-Version": "2025-11-25"}
        assert httpx.get(direct, headers=headers, timeout=10).status_code == 404
        assert httpx.delete(direct, headers=headers, timeout=10).status_code == 404
    assert len(stack.upstream_requests()) == before, "nothing of mallory's reached the upstream"
    time.sleep(1.5)
    for index in range(2):
        records = [json.loads(line) for line in replicas.audit(index).read_text().splitlines()]
        mismatches = [r for r in records if r["event"] == "session_mismatch"]
        assert len(mismatches) >= 3 and all(r["reason"] == "other_subject" for r in mismatches[-3:])
        assert mismatches[-1]["subject"] != mismatches[-1]["sealed_subject"]

    # A replica restarted with the same keys keeps serving the session.
    replicas.stop_replica(0)
    replicas.start_replica(0)
    direct = f"http://127.0.0.1:{replicas.ports[0]}/jira/mcp"
    again = rpc(stack, direct, alice, "tools/call", {"name": "list_issues", "arguments": {"project": "ENG"}}, session=sealed)
    assert again.status_code == 200 and "ENG-1" in again.text, again.text


def test_the_client_address_comes_from_the_trusted_balancer(stack, replicas):
    url = f"{replicas.public_url}/jira/mcp"
    token = stack.authgent_token("jira:read", resource=url)
    # The client connects from 127.0.0.2 (HAProxy reaches the replicas from 127.0.0.1, the one
    # trusted proxy) and forges an X-Forwarded-For: HAProxy appends the real address after it.
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                       "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}})
    headers = {"Authorization": f"Bearer {token}", "Accept": ACCEPT, "Content-Type": "application/json", "X-Forwarded-For": "203.0.113.66"}
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2")) as client:
        for _ in range(2):  # one request to each replica
            response = client.post(url, headers=headers, content=body, timeout=10)
            assert response.status_code == 200, response.text
    time.sleep(1.5)
    initializes = sorted((r for index in range(2) for r in replicas.requests(index) if r.get("mcp_method") == "initialize"), key=lambda r: r["ts"])
    assert [r["peer"] for r in initializes[-2:]] == ["127.0.0.2", "127.0.0.2"], "the address HAProxy saw, not the forged one"


RELOAD_POLICY = REPLICA_POLICY.replace("trusted_proxies: [127.0.0.1/32]\n", "")


def test_policy_reloads_under_load_drop_nothing(stack, bouncer_bin, tmp_path):
    """wrk calls an allowed tool through one gateway while its policy file changes 20 times
    (valid and invalid versions; another tool's rule tightened and loosened): no connection
    error, no non-2xx answer, and each valid version in force right after its reload."""
    port = free_port()
    key = tmp_path / "session.key"
    key.write_text(subprocess.run([bouncer_bin, "sessions", "keygen"], check=True, capture_output=True, text=True).stdout)
    public_url = f"http://127.0.0.1:{port}"
    policy = tmp_path / "policy.yaml"
    audit = tmp_path / "audit.jsonl"

    def version(create_scope: str) -> str:
        return RELOAD_POLICY.format(port=port, public_url=public_url, key=key, audit=audit, authgent=stack.authgent,
                                    upstream=stack.upstream, create_scope=create_scope)

    def replace(text: str) -> None:
        staged = tmp_path / "policy.yaml.new"
        staged.write_text(text)
        os.replace(staged, policy)

    replace(version("jira:read"))
    gateway = Process("reload-gateway", [bouncer_bin, "run", "--config", str(policy)], tmp_path)
    try:
        gateway.wait_for(f"{public_url}/healthz")
        url = f"{public_url}/jira/mcp"
        token = stack.authgent_token("jira:read", resource=url)
        response = rpc(stack, url, token, "initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "wrk", "version": "1"}})
        assert response.status_code == 200, response.text
        session = response.headers["mcp-session-id"]
        script = tmp_path / "call.lua"
        # Each call its own JSON-RPC id: the SDK server routes a response to the stream of the
        # request with that id, so ids repeated on one session would cross answers.
        script.write_text(f"""
local counter = 0
local headers = {{
  ["Content-Type"] = "application/json",
  ["Accept"] = "{ACCEPT}",
  ["Authorization"] = "Bearer {token}",
  ["Mcp-Session-Id"] = "{session}",
  ["MCP-Protocol-Version"] = "2025-11-25",
}}
request = function()
  counter = counter + 1
  local body = string.format('{{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{{"name":"list_issues","arguments":{{"project":"OPS"}}}}}}', counter)
  return wrk.format("POST", nil, headers, body)
end
""")
        wrk = subprocess.Popen(["wrk", "-t1", "-c8", "-d16s", "--timeout", "10s", "-s", str(script), url],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(1.0)

        calls = iter(range(10_000_000, 20_000_000))

        def create_status() -> int:
            return rpc(stack, url, token, "tools/call", {"name": "create_issue", "arguments": {"title": "t"}}, id=next(calls), session=session).status_code

        reloads = 0
        for step in range(20):
            if step % 4 == 3:
                replace(version("jira:read").replace("methods:", "methods: [unbalanced"))  # invalid: kept out
                expected = None
            else:
                tight = step % 2 == 0
                replace(version("jira:admin" if tight else "jira:read"))
                expected = 403 if tight else 200
                reloads += 1
            os.kill(gateway.proc.pid, signal.SIGHUP)
            if expected is not None:
                deadline = time.monotonic() + 5
                while create_status() != expected:
                    assert time.monotonic() < deadline, f"step {step}: the new policy was not in force within 5 s"
                    time.sleep(0.05)
            time.sleep(0.5)
        output, _ = wrk.communicate(timeout=60)
        assert wrk.returncode == 0, output
        completed = int(re.search(r"(\d+) requests in", output).group(1))
        assert completed > 50, output
        assert "Socket errors" not in output, output
        assert "Non-2xx" not in output, output
        assert gateway.proc.poll() is None, "SIGHUP did not end the gateway"
        time.sleep(1.5)
        records = [json.loads(line) for line in audit.read_text().splitlines()]
        assert len([r for r in records if r["event"] == "reload" and r.get("what") == "policy"]) == reloads
        assert len([r for r in records if r["event"] == "reload_failed"]) == 20 - reloads
        # SIGUSR1 reopens the audit file; neither signal ends the process.
        os.kill(gateway.proc.pid, signal.SIGUSR1)
        time.sleep(0.5)
        assert gateway.proc.poll() is None
    finally:
        gateway.stop()


def test_the_deploy_files_pass_their_checks(bouncer_bin, tmp_path):
    """deploy/haproxy.cfg and haproxy-client-cert.cfg pass `haproxy -c` (with a certificate made here), and the policy in
    deploy/kubernetes/mcp-bouncer.yaml passes `mcp-bouncer check` with its secrets in place."""
    import yaml

    deploy = Path(__file__).resolve().parent.parent.parent / "deploy"
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
                    "-subj", "/CN=mcp.example.com", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    bundle = tmp_path / "mcp.example.com.pem"
    bundle.write_text(cert.read_text() + key.read_text())
    for name in ("haproxy.cfg", "haproxy-client-cert.cfg"):
        config = tmp_path / name
        config.write_text((deploy / name).read_text().replace("/etc/haproxy/certs/mcp.example.com.pem", str(bundle))
                          .replace("/etc/haproxy/certs/client-ca.pem", str(cert)))
        check = subprocess.run(["haproxy", "-c", "-f", str(config)], capture_output=True, text=True)
        assert check.returncode == 0, name + ": " + check.stdout + check.stderr

    documents = list(yaml.safe_load_all((deploy / "kubernetes" / "mcp-bouncer.yaml").read_text()))
    policy_text = next(d for d in documents if d["kind"] == "ConfigMap")["data"]["policy.yaml"]
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "session-key-k1").write_text(subprocess.run([bouncer_bin, "sessions", "keygen"], check=True, capture_output=True, text=True).stdout)
    subprocess.run([bouncer_bin, "audit", "keygen", "--out", str(secrets / "audit-signing-key.pem")], check=True, capture_output=True)
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_text.replace("/run/secrets/mcp-bouncer", str(secrets)).replace("/var/log/mcp-bouncer", str(tmp_path)))
    result = subprocess.run([bouncer_bin, "check", str(policy)], capture_output=True, text=True, env={**os.environ, "JIRA_API_KEY": "x"})
    assert result.returncode == 0, result.stderr
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    assert "--watch" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]


def test_dpop_proofs_meet_one_replica_behind_the_shipped_haproxy_config(stack, replicas):
    """deploy/haproxy.cfg balances `Authorization: DPoP` requests by their token, so the replica
    that saw a proof sees its replay and refuses it. Plain round-robin (the other balancer here)
    sends the replay to the other replica, which has not seen it: why the rule is shipped."""
    from test_dpop import Prover

    deploy = (Path(__file__).resolve().parent.parent.parent / "deploy" / "haproxy.cfg").read_text()
    assert 'req.hdr(Authorization) -m beg -i "DPoP "' in deploy
    port = free_port()
    # Loopback, plain HTTP (TLS is not what is tested), these replicas; the rules as shipped.
    config = re.sub(r"  bind :443 .*", f"  bind 127.0.0.1:{port}", deploy).replace("maxconn 20000", "maxconn 1000")
    config = config.replace("10.0.1.11:8080", f"127.0.0.1:{replicas.ports[0]}").replace("10.0.1.12:8080", f"127.0.0.1:{replicas.ports[1]}")
    (replicas.work / "haproxy-shipped.cfg").write_text(config)
    shipped = Process("haproxy-shipped", ["haproxy", "-db", "-f", str(replicas.work / "haproxy-shipped.cfg")], replicas.work)
    try:
        shipped.wait_for(f"http://127.0.0.1:{port}/healthz")
        url = f"{replicas.public_url}/jira/mcp"
        prover = Prover()
        registered = stack.register_client("jira:read")
        issued = httpx.post(f"{stack.authgent}/token", auth=(registered["client_id"], registered["client_secret"]),
                            headers={"DPoP": prover.proof("POST", f"{stack.authgent}/token")},
                            data={"grant_type": "client_credentials", "scope": "jira:read", "resource": url}).json()
        assert issued["token_type"] == "DPoP", issued
        token = issued["access_token"]

        def twice(balancer: str) -> list[int]:
            proof = prover.proof("POST", url, token)  # htu is the public URL, whichever balancer carries it
            headers = {"Authorization": f"DPoP {token}", "DPoP": proof, "Accept": ACCEPT, "Content-Type": "application/json"}
            body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                               "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}}})
            return [httpx.post(f"{balancer}/jira/mcp", headers=headers, content=body, timeout=30).status_code for _ in range(2)]

        assert twice(f"http://127.0.0.1:{port}") == [200, 401], "the shipped config: the replay meets the replica that saw the proof"
        assert twice(replicas.public_url) == [200, 200], "round-robin: each replica sees the proof once"
    finally:
        shipped.stop()

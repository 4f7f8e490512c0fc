"""The audit trail and the metrics as an operator meets them: the real binary with an audit file
and a signing key made by `mcp-bouncer audit keygen`, scraped by a real Prometheus server, its
file checked by `mcp-bouncer audit verify`, the alerting rules checked and tested by promtool."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from interop_stack import Process, free_port

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus"

POLICY = """
listen: 127.0.0.1:{port}
public_url: http://127.0.0.1:{port}
admin:
  listen: 127.0.0.1:{admin_port}
audit:
  file: {audit_file}
  signing_key: {key}
  checkpoint_every: 4
authorization_servers:
  authgent:
    issuer: {authgent}
    algorithms: [ES256]
resources:
  - path: /audited/mcp
    authorization_server: authgent
    scopes_supported: [jira:read]
    upstream: {upstream}/mcp
    methods:
      initialize: []
      notifications/*: []
      tools/list: [jira:read]
      tools/call:
        list_issues: [jira:read]
        create_issue: [jira:write]
"""


def binary() -> str:
    return os.environ.get("BOUNCER_BIN") or str(REPO / ".build" / "debug" / "mcp-bouncer")


def bouncer(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([binary(), *args], capture_output=True, text=True, timeout=60)


class Audited:
    def __init__(self, stack, work: Path):
        self.work = work
        self.key = work / "audit.key"
        keygen = bouncer("audit", "keygen", "--out", str(self.key))
        assert keygen.returncode == 0, keygen.stderr
        assert stat.S_IMODE(self.key.stat().st_mode) == 0o600
        self.public_key = work / "audit.pub"
        pem = keygen.stdout[keygen.stdout.index("-----BEGIN PUBLIC KEY-----"):]
        self.public_key.write_text(pem)
        # keygen never overwrites a key.
        assert bouncer("audit", "keygen", "--out", str(self.key)).returncode != 0

        self.port = free_port()
        self.admin_port = free_port()
        self.audit_file = work / "audit.jsonl"
        policy = work / "audited.yaml"
        policy.write_text(POLICY.format(port=self.port, admin_port=self.admin_port, audit_file=self.audit_file, key=self.key,
                                        authgent=stack.authgent, upstream=stack.upstream))
        self.resource = f"http://127.0.0.1:{self.port}/audited/mcp"
        self.process = Process("mcp-bouncer-audited", [binary(), "run", "--config", str(policy), "--log-format", "json"], work)
        self.process.wait_for(f"http://127.0.0.1:{self.admin_port}/healthz")
        deadline = time.monotonic() + 30
        while httpx.get(f"http://127.0.0.1:{self.admin_port}/readyz").status_code != 200:
            assert time.monotonic() < deadline, self.process.log_path.read_text()
            time.sleep(0.2)

    def call(self, token: str | None, method: str, params: dict | None = None, session: str | None = None) -> httpx.Response:
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        if session:
            headers["Mcp-Session-Id"] = session
        if token:
            headers["Authorization"] = f"Bearer {token}"
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}
        return httpx.post(self.resource, headers=headers, json=body, timeout=30)

    def stop(self) -> None:
        self.process.stop()


@pytest.fixture(scope="module")
def audited(stack, tmp_path_factory):
    gateway = Audited(stack, tmp_path_factory.mktemp("audited"))
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def tokens(stack, audited):
    return {
        "read": stack.authgent_token("jira:read", resource=audited.resource),
        "other_server": stack.authgent_token("jira:read"),
    }


INITIALIZE = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "interop", "version": "1"}}


def test_prometheus_scrapes_the_request_counter(audited, tokens, tmp_path):
    assert audited.call(tokens["read"], "initialize", INITIALIZE).status_code == 200
    assert audited.call(tokens["read"], "tools/call", {"name": "create_issue", "arguments": {"title": "x"}}).status_code == 403

    prometheus_port = free_port()
    config = tmp_path / "prometheus.yml"
    shutil.copy(RULES / "mcp-bouncer-rules.yml", tmp_path / "mcp-bouncer-rules.yml")
    config.write_text(f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - mcp-bouncer-rules.yml
scrape_configs:
  - job_name: mcp-bouncer
    static_configs:
      - targets: ["127.0.0.1:{audited.admin_port}"]
""")
    prometheus = Process("prometheus", ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                                        f"--web.listen-address=127.0.0.1:{prometheus_port}"], tmp_path)
    try:
        api = f"http://127.0.0.1:{prometheus_port}/api/v1"
        prometheus.wait_for(f"http://127.0.0.1:{prometheus_port}/-/ready")
        query = 'mcp_bouncer_requests_total{job="mcp-bouncer", resource="/audited/mcp"}'
        deadline = time.monotonic() + 60
        results = []
        while time.monotonic() < deadline:
            reply = httpx.get(f"{api}/query", params={"query": query}).json()
            assert reply["status"] == "success", reply
            results = reply["data"]["result"]
            if len(results) >= 2:
                break
            time.sleep(0.5)
        series = {(r["metric"]["method"], r["metric"].get("target", ""), r["metric"]["outcome"]): float(r["value"][1]) for r in results}
        assert series.get(("initialize", "", "forwarded")) == 1, results
        assert series.get(("tools/call", "create_issue", "denied")) == 1, results
        # The rules loaded, and the target is up.
        rules = httpx.get(f"{api}/rules").json()["data"]["groups"]
        assert {rule["name"] for group in rules for rule in group["rules"]} >= {"MCPBouncerAuditRecordsDropped", "MCPBouncerDown"}
        up = httpx.get(f"{api}/query", params={"query": 'up{job="mcp-bouncer"}'}).json()["data"]["result"]
        assert up and up[0]["value"][1] == "1"
    finally:
        prometheus.stop()


def test_audit_records_verify_and_a_one_byte_edit_is_found(audited, tokens):
    session = audited.call(tokens["read"], "initialize", INITIALIZE).headers["mcp-session-id"]
    arguments = {"project": "OPS", "api_key": "k-123"}
    assert audited.call(tokens["read"], "tools/call", {"name": "list_issues", "arguments": arguments}, session=session).status_code == 200
    assert audited.call(None, "tools/list").status_code == 401
    assert audited.call(tokens["other_server"], "tools/list").status_code == 401
    # SIGUSR1: the file is reopened (logrotate), after a checkpoint.
    os.killpg(audited.process.proc.pid, signal.SIGUSR1)
    time.sleep(0.5)
    assert audited.call(tokens["read"], "tools/list", session=session).status_code == 200
    # SIGTERM: stop record, final checkpoint.
    audited.stop()

    text = audited.audit_file.read_text()
    records = [json.loads(line) for line in text.splitlines()]
    assert records[0]["event"] == "start" and records[-1]["event"] == "checkpoint" and records[-2]["event"] == "stop"
    requests = [r for r in records if r["event"] == "request"]
    outcomes = [(r.get("mcp_method"), r["decision"], r.get("reason"), r["status"]) for r in requests]
    assert outcomes == [
        ("initialize", "allowed", None, 200),
        ("tools/call", "denied", "insufficient_scope", 403),
        ("initialize", "allowed", None, 200),
        ("tools/call", "allowed", None, 200),
        (None, "denied", "missing_token", 401),
        (None, "denied", "invalid_token.wrong_audience", 401),
        ("tools/list", "allowed", None, 200),
    ], outcomes
    listed = requests[3]
    assert listed["target"] == "list_issues"
    canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"))
    assert listed["arguments_sha256"] == hashlib.sha256(canonical.encode()).hexdigest()
    assert listed["session"] == hashlib.sha256(session.encode()).hexdigest()[:16]
    assert listed["token_id"] == hashlib.sha256(tokens["read"].encode()).hexdigest()[:16]
    assert listed["subject"] and listed["issuer"].startswith("http://127.0.0.1:") and listed["upstream_credential"] == "none"
    # No token, and no argument value, anywhere in the trail.
    for secret in [tokens["read"], tokens["other_server"], "k-123"]:
        assert secret not in text

    verified = bouncer("audit", "verify", str(audited.audit_file), "--public-key", str(audited.public_key))
    assert verified.returncode == 0, verified.stderr
    assert f"OK: {len(records)} records" in verified.stdout

    # One byte: a 403 becomes a 402.
    lines = text.splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if '"status":403' in line)
    lines[index] = lines[index].replace('"status":403', '"status":402')
    audited.audit_file.write_text("".join(lines))
    broken = bouncer("audit", "verify", str(audited.audit_file), "--public-key", str(audited.public_key))
    assert broken.returncode == 1
    assert f"{audited.audit_file}:{index + 1}: edited" in broken.stderr, broken.stderr

    # The operational log was JSON, one object per line, and held no token either.
    log = audited.process.log_path.read_text()
    json_lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert any(line["message"] == "listening" and line["level"] == "info" for line in json_lines), log
    assert tokens["read"] not in log


def test_promtool_checks_and_tests_the_alerting_rules():
    checked = subprocess.run(["promtool", "check", "rules", str(RULES / "mcp-bouncer-rules.yml")], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = subprocess.run(["promtool", "check", "config", "--syntax-only", str(RULES / "prometheus.yml")], capture_output=True, text=True, cwd=RULES)
    assert config.returncode == 0, config.stdout + config.stderr
    tested = subprocess.run(["promtool", "test", "rules", "mcp-bouncer-rules.test.yml"], capture_output=True, text=True, cwd=RULES)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout

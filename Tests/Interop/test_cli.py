"""`mcp-bouncer check` as an operator runs it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def bouncer(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    binary = os.environ.get("BOUNCER_BIN") or str(REPO / ".build" / "debug" / "mcp-bouncer")
    return subprocess.run([binary, *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=60)


def test_check_accepts_every_example_policy(tmp_path):
    # The example's audit signing key, where systemd's LoadCredential would put it.
    assert bouncer("audit", "keygen", "--out", str(tmp_path / "audit.key")).returncode == 0
    # The demo's pins (it makes them as it starts); any valid pin file will do.
    (tmp_path / "demo-pins.yaml").write_text("tools:\n  - name: list_issues\n    sha256: " + "0" * 64 + "\n")
    for policy in sorted((REPO / "policies").glob("*.yaml")):
        result = bouncer("check", str(policy), env={"JIRA_API_KEY": "x", "BOUNCER_CLIENT_SECRET": "y", "DEMO_GATEWAY_PORT": "8443",
                                                    "DEMO_ISSUER": "http://127.0.0.1:9000", "DEMO_UPSTREAM": "http://127.0.0.1:9001",
                                                    "DEMO_GATEWAY_CLIENT_SECRET": "z", "CREDENTIALS_DIRECTORY": str(tmp_path),
                                                    "DEMO_TOOL_PINS": str(tmp_path / "demo-pins.yaml"),
                                                    "SESSION_KEY_K1": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="})
        assert result.returncode == 0, f"{policy}: {result.stderr}"
        assert "OK" in result.stdout


def test_check_accepts_the_identity_provider_recipes_and_prints_warnings():
    for policy in sorted((REPO / "policies" / "recipes").glob("*.yaml")):
        result = bouncer("check", str(policy))
        assert result.returncode == 0, f"{policy}: {result.stderr}"
        assert "OK" in result.stdout
    # Entra v2 tokens name the API by its application id, a GUID: loaded, with a warning.
    entra = bouncer("check", str(REPO / "policies" / "recipes" / "entra.yaml"))
    assert "OK with 1 warning" in entra.stdout
    assert "resources[0].accepted_audiences: '4f8c2a91-6d3e-4b7a-a5c1-9e2d7f3b8c06' looks like a client id" in entra.stderr and "(warning)" in entra.stderr


def test_check_refuses_an_audience_two_resources_share(tmp_path):
    text = (REPO / "policies" / "recipes" / "okta.yaml").read_text()
    resource = text[text.index("  - path: /jira/mcp"):]
    policy = tmp_path / "shared.yaml"
    policy.write_text(text + resource.replace("/jira/mcp", "/wiki/mcp"))
    result = bouncer("check", str(policy))
    assert result.returncode == 1
    assert "resources[1].accepted_audiences: audience 'api://jira-mcp' is also accepted by resource /jira/mcp" in result.stderr, result.stderr


def test_check_reports_every_problem_with_line_and_key_path(tmp_path):
    policy = tmp_path / "bad.yaml"
    policy.write_text("""\
listen: 127.0.0.1:8443
public_url: http://127.0.0.1:8443
authorization_servers:
  corp:
    issuer: http://127.0.0.1:9000
    algorithms: [HS256]
resources:
  - path: /mcp
    authorization_server: crop
    scope: [read]
    upstream: http://127.0.0.1:9001/mcp
    upstream_credentials:
      static: { header: X-Key, value: "${env:MISSING_SECRET_FOR_TEST}" }
    methods:
      tools/call:
        create_issue: [write access]
""")
    result = bouncer("check", str(policy))
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith(f"{policy}:line")]
    expected = [
        ("line 6", "authorization_servers.corp.algorithms", "symmetric and unsupported"),
        ("line 9", "resources[0].authorization_server", "no authorization server named 'crop'"),
        ("line 10", "resources[0].scope", "unknown key 'scope'"),
        ("line 13", "resources[0].upstream_credentials.static.value", "MISSING_SECRET_FOR_TEST is not set"),
        ("line 16", "resources[0].methods.tools/call.create_issue", "not a valid scope token"),
    ]
    assert len(lines) == len(expected), result.stderr
    for line, (where, path, message) in zip(lines, expected):
        assert where in line and path in line, line
        assert message.split(" ")[0] in line, line


def test_run_refuses_an_invalid_policy_and_starts_nothing(tmp_path):
    policy = tmp_path / "bad.yaml"
    policy.write_text("listen: 127.0.0.1:0\n")
    result = bouncer("run", "--config", str(policy))
    assert result.returncode != 0
    assert "required key 'public_url' is missing" in result.stderr

"""Starts the real third-party parts on 127.0.0.1 with free ports, and mcp-bouncer in front.

Everything is started once per test session and stopped by PID at the end:
- authgent-server: authorization server, ES256 JWTs, dynamic registration, auto-approve.
- nanoidp: second authorization server, RS256 JWTs, fixed client.
- the legacy MCP server (official MCP Python SDK, no auth), recording request headers.
- mcp-bouncer (BOUNCER_BIN), with a policy written here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    """A child process with its output in a log file, stopped by PID."""

    def __init__(self, name: str, args: list[str], log_dir: Path, env: dict | None = None, cwd: Path | None = None):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            args, stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=cwd,
            start_new_session=True,
        )

    def wait_for(self, url: str, timeout: float = 60.0, verify=True) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_path.read_text()}")
            try:
                httpx.get(url, timeout=1.0, verify=ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify)
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer {url} within {timeout}s:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


@dataclass
class Stack:
    gateway: str          # http://127.0.0.1:PORT
    jira: str             # resource URI protected by authgent (ES256)
    rsa: str              # resource URI protected by nanoidp (RS256)
    authgent: str         # issuer
    nanoidp: str          # issuer
    record: Path          # upstream's header record
    upstream: str
    gateway_log: Path
    static_key: str
    pinned: str           # resource URI whose upstream changed a tool after it was pinned
    pins: Path            # the pin file `mcp-bouncer pin` wrote for the original server
    rug_upstream: str     # the upstream serving the changed tool
    alert: str            # the same, with on_tool_change: alert
    forms: str            # a resource whose tools elicit (a password, a harmless field)
    audit: Path           # the gateway's audit trail

    def audit_records(self, event: str) -> list[dict]:
        if not self.audit.exists():
            return []
        records = [json.loads(line) for line in self.audit.read_text().splitlines() if line.strip()]
        return [record for record in records if record.get("event") == event]

    def upstream_requests(self) -> list[dict]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines() if line.strip()]

    def register_client(self, scope: str, grant_types=("client_credentials",), **extra) -> dict:
        body = {"client_name": "interop", "grant_types": list(grant_types), "scope": scope,
                "token_endpoint_auth_method": "client_secret_basic", **extra}
        response = httpx.post(f"{self.authgent}/register", json=body)
        response.raise_for_status()
        return response.json()

    def authgent_token(self, scope: str, resource: str | None = None, client: dict | None = None) -> str:
        client = client or self.register_client(scope)
        response = httpx.post(
            f"{self.authgent}/token", auth=(client["client_id"], client["client_secret"]),
            data={"grant_type": "client_credentials", "scope": scope, "resource": resource or self.jira},
        )
        response.raise_for_status()
        return response.json()["access_token"]

    def nanoidp_token(self, scope: str, resource: str | None = None) -> str:
        response = httpx.post(
            f"{self.nanoidp}/token", auth=("demo-client", "demo-secret"),
            data={"grant_type": "client_credentials", "scope": scope, "resource": resource or self.rsa},
        )
        response.raise_for_status()
        return response.json()["access_token"]


POLICY = """
listen: 127.0.0.1:{gateway_port}
public_url: http://127.0.0.1:{gateway_port}
audit:
  file: {audit}
authorization_servers:
  authgent:
    issuer: {authgent}
    algorithms: [ES256]
  nanoidp:
    issuer: {nanoidp}
    algorithms: [RS256]
resources:
  - path: /jira/mcp
    name: Legacy Jira
    authorization_server: authgent
    scopes_supported: [jira:read]
    upstream: {upstream}/mcp
    upstream_credentials:
      static: {{ header: X-Api-Key, value: "${{env:INTEROP_UPSTREAM_KEY}}" }}
    methods:
      initialize: []
      notifications/*: []
      ping: []
      tools/list: [jira:read]
      tools/call:
        list_issues: [jira:read]
        slow_report: [jira:read]
        create_issue: [jira:write]
        delete_issue: [jira:admin]
      resources/list: [jira:read]
      resources/read:
        "docs://*": [jira:read]
  - path: /rsa/mcp
    name: Legacy Jira via nanoidp
    authorization_server: nanoidp
    scopes_supported: [jira:read]
    upstream: {upstream}/mcp
    methods:
      initialize: []
      notifications/*: []
      tools/list: [jira:read]
      tools/call:
        list_issues: [jira:read]
  - path: /pinned/mcp
    name: Legacy Jira, tools pinned
    authorization_server: authgent
    scopes_supported: [jira:read]
    upstream: {rug_upstream}/mcp
    tool_pins: {pins}
    methods:
      initialize: []
      notifications/*: []
      tools/list: [jira:read]
      tools/call:
        list_issues: [jira:read]
        delete_issue: [jira:read]
  - path: /alert/mcp
    name: Legacy Jira, tools pinned, changes only reported
    authorization_server: authgent
    scopes_supported: [jira:read]
    upstream: {rug_upstream}/mcp
    tool_pins: {pins}
    on_tool_change: alert
    methods:
      initialize: []
      notifications/*: []
      tools/list: [jira:read]
      tools/call:
        list_issues: [jira:read]
        delete_issue: [jira:read]
  - path: /forms/mcp
    name: Legacy Jira, tools that ask the user
    authorization_server: authgent
    scopes_supported: [jira:read]
    upstream: {upstream}/mcp
    upstream_credentials:
      static: {{ header: X-Api-Key, value: "${{env:INTEROP_UPSTREAM_KEY}}" }}
    client_responses: [jira:read]
    methods:
      initialize: []
      notifications/*: []
      tools/list: [jira:read]
      tools/call:
        sign_in: [jira:read]
        choose_project: [jira:read]
"""


@contextlib.contextmanager
def running_stack(work: Path, binary: str):
    """Starts everything in `work` and yields a Stack; stops everything on exit."""
    processes: list[Process] = []
    try:
        # authgent-server writes .env and its database into its working directory.
        authgent_port = free_port()
        authgent = f"http://127.0.0.1:{authgent_port}"
        authgent_dir = work / "authgent"
        authgent_dir.mkdir()
        ag = Process("authgent", [str(VENV_BIN / "authgent-server"), "run", "--host", "127.0.0.1", "--port", str(authgent_port)],
                     work, cwd=authgent_dir, env={
                         "AUTHGENT_SERVER_URL": authgent,
                         "AUTHGENT_DATABASE_URL": f"sqlite+aiosqlite:///{authgent_dir}/authgent.db",
                         "AUTHGENT_SECRET_KEY": os.urandom(32).hex(),
                         "AUTHGENT_CONSENT_MODE": "auto_approve",
                     })
        processes.append(ag)

        nanoidp_port = free_port()
        nanoidp = f"http://127.0.0.1:{nanoidp_port}"
        nano_dir = work / "nanoidp"
        # nanoidp writes key material into its working directory: keep it in the scratch area.
        subprocess.run([sys.executable, "-m", "nanoidp", "init", str(nano_dir)], check=True, capture_output=True, cwd=work)
        settings = nano_dir / "settings.yaml"
        text = settings.read_text()
        text = text.replace('issuer: "http://localhost:8000"', f'issuer: "{nanoidp}"')
        text = text.replace("  token_expiry_minutes: 60", '  token_expiry_minutes: 60\n  scopes_supported: ["openid", "jira:read", "jira:write", "jira:admin"]')
        assert nanoidp in text and "jira:read" in text, "nanoidp's settings.yaml template changed"
        settings.write_text(text)
        nano = Process("nanoidp", [sys.executable, "-m", "nanoidp", "--config", str(nano_dir), "--host", "127.0.0.1", "--port", str(nanoidp_port)], work, cwd=work)
        processes.append(nano)

        upstream_port = free_port()
        upstream = f"http://127.0.0.1:{upstream_port}"
        record = work / "upstream-headers.jsonl"
        up = Process("upstream", [sys.executable, str(HERE / "servers" / "legacy_upstream.py"), "--port", str(upstream_port), "--record", str(record)], work)
        processes.append(up)

        # The same server again, with one tool's description changed since it was pinned.
        rug_port = free_port()
        rug_upstream = f"http://127.0.0.1:{rug_port}"
        rug = Process("rug-upstream", [sys.executable, str(HERE / "servers" / "legacy_upstream.py"), "--port", str(rug_port),
                                       "--record", str(work / "rug-headers.jsonl"), "--rug-pull"], work)
        processes.append(rug)

        ag.wait_for(f"{authgent}/health")
        nano.wait_for(f"{nanoidp}/.well-known/openid-configuration")
        up.wait_for(f"{upstream}/healthz-not-served")
        rug.wait_for(f"{rug_upstream}/healthz-not-served")
        # Pinned while the server was as reviewed.
        pins = work / "pins.yaml"
        subprocess.run([binary, "pin", "--upstream", f"{upstream}/mcp", "--out", str(pins)], check=True, capture_output=True, timeout=60)

        gateway_port = free_port()
        policy = work / "policy.yaml"
        audit = work / "audit.jsonl"
        policy.write_text(POLICY.format(gateway_port=gateway_port, authgent=authgent, nanoidp=nanoidp, upstream=upstream, rug_upstream=rug_upstream, pins=pins,
                                        audit=audit))
        static_key = "upstream-secret-" + os.urandom(4).hex()
        gw = Process("mcp-bouncer", [binary, "run", "--config", str(policy), "--log-level", "debug"], work,
                     env={"INTEROP_UPSTREAM_KEY": static_key})
        processes.append(gw)
        gateway = f"http://127.0.0.1:{gateway_port}"
        gw.wait_for(f"{gateway}/healthz")
        deadline = time.monotonic() + 30
        while httpx.get(f"{gateway}/readyz").status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway not ready:\n{gw.log_path.read_text()}")
            time.sleep(0.2)
        yield Stack(gateway=gateway, jira=f"{gateway}/jira/mcp", rsa=f"{gateway}/rsa/mcp", authgent=authgent, nanoidp=nanoidp,
                    record=record, upstream=upstream, gateway_log=gw.log_path, static_key=static_key,
                    pinned=f"{gateway}/pinned/mcp", pins=pins, rug_upstream=rug_upstream, alert=f"{gateway}/alert/mcp",
                    forms=f"{gateway}/forms/mcp", audit=audit)
    finally:
        for process in reversed(processes):
            process.stop()
        if os.environ.get("INTEROP_KEEP_LOGS"):
            target = Path(os.environ["INTEROP_KEEP_LOGS"])
            target.mkdir(parents=True, exist_ok=True)
            for log in work.glob("*.log"):
                shutil.copy(log, target / log.name)


class AuthgentProcess:
    """authgent-server that can be stopped and started again on the same port and database."""

    def __init__(self, work: Path, **settings: str):
        """`settings`: more AUTHGENT_* environment (AUTHGENT_REQUIRE_DPOP="true")."""
        self.work = work
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = work / "authgent-x"
        self.dir.mkdir()
        self.secret = os.urandom(32).hex()
        self.process: Process | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self.process = Process(f"authgent-x-{self.starts}", [str(Path(sys.executable).parent / "authgent-server"), "run", "--host", "127.0.0.1", "--port", str(self.port)],
                               self.work, cwd=self.dir, env={
                                   "AUTHGENT_SERVER_URL": self.url,
                                   "AUTHGENT_DATABASE_URL": f"sqlite+aiosqlite:///{self.dir}/authgent.db",
                                   "AUTHGENT_SECRET_KEY": self.secret,
                                   **self.settings,
                               })
        self.process.wait_for(f"{self.url}/health")

    def stop(self) -> None:
        if self.process:
            self.process.stop()
            self.process = None

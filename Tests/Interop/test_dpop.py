"""Sender-constrained tokens end to end, real parts only: authgent-server issues a DPoP-bound
token (client credentials with a DPoP proof made here: `cnf.jkt`, token_type DPoP); through the
gateway the MCP calls succeed with a fresh proof each, and the same token as `Bearer`, with a
replayed proof, with a proof for another URL, or with another key's proof is refused with the
DPoP challenge and nothing forwarded."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from test_audit import INITIALIZE
from test_gateway import ACCEPT


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Prover:
    """A DPoP key and its proofs (RFC 9449 §4.2)."""

    def __init__(self):
        self.key = ec.generate_private_key(ec.SECP256R1())
        numbers = self.key.public_key().public_numbers()
        self.jwk = {"kty": "EC", "crv": "P-256", "x": b64(numbers.x.to_bytes(32, "big")), "y": b64(numbers.y.to_bytes(32, "big"))}

    def proof(self, method: str, url: str, token: str | None = None, jti: str | None = None, nonce: str | None = None) -> str:
        claims = {"jti": jti or str(uuid.uuid4()), "htm": method, "htu": url, "iat": int(time.time())}
        if token:
            claims["ath"] = b64(hashlib.sha256(token.encode()).digest())
        if nonce:
            claims["nonce"] = nonce
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"typ": "dpop+jwt", "jwk": self.jwk})

    def thumbprint(self) -> str:
        canonical = json.dumps({k: self.jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True)
        return b64(hashlib.sha256(canonical.encode()).digest())


def bound_token(stack, prover: Prover, scope: str = "jira:read") -> str:
    client = stack.register_client(scope)
    response = httpx.post(
        f"{stack.authgent}/token", auth=(client["client_id"], client["client_secret"]),
        headers={"DPoP": prover.proof("POST", f"{stack.authgent}/token")},
        data={"grant_type": "client_credentials", "scope": scope, "resource": stack.jira},
    )
    response.raise_for_status()
    answer = response.json()
    assert answer["token_type"] == "DPoP", answer
    claims = jwt.decode(answer["access_token"], options={"verify_signature": False})
    assert claims["cnf"] == {"jkt": prover.thumbprint()}, claims
    return answer["access_token"]


def call(stack, token: str, method: str, params: dict, *, scheme: str = "DPoP", proof: str | None = None, session: str | None = None) -> httpx.Response:
    headers = {"Accept": ACCEPT, "Content-Type": "application/json", "Authorization": f"{scheme} {token}"}
    if proof:
        headers["DPoP"] = proof
    if session:
        headers["Mcp-Session-Id"] = session
        headers["MCP-Protocol-Version"] = "2025-11-25"
    return httpx.post(stack.jira, headers=headers, content=json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}), timeout=30)


def test_a_dpop_bound_authgent_token_works_only_with_its_proofs(stack):
    prover = Prover()
    token = bound_token(stack, prover)
    opened = call(stack, token, "initialize", INITIALIZE, proof=prover.proof("POST", stack.jira, token))
    assert opened.status_code == 200, opened.text
    session = opened.headers["mcp-session-id"]
    called = call(stack, token, "tools/call", {"name": "list_issues", "arguments": {}}, proof=prover.proof("POST", stack.jira, token), session=session)
    assert called.status_code == 200 and "OPS-1" in called.text, called.text

    before = len(stack.upstream_requests())
    refusals = {
        "as Bearer": call(stack, token, "tools/call", {"name": "list_issues"}, scheme="Bearer", session=session),
        "without a proof": call(stack, token, "tools/call", {"name": "list_issues"}, session=session),
        "another URL": call(stack, token, "tools/call", {"name": "list_issues"}, proof=prover.proof("POST", stack.rsa, token), session=session),
        "another key": call(stack, token, "tools/call", {"name": "list_issues"}, proof=Prover().proof("POST", stack.jira, token), session=session),
        "no ath": call(stack, token, "tools/call", {"name": "list_issues"}, proof=prover.proof("POST", stack.jira), session=session),
    }
    once = prover.proof("POST", stack.jira, token, jti="only-once")
    assert call(stack, token, "tools/call", {"name": "list_issues", "arguments": {}}, proof=once, session=session).status_code == 200
    after_good = len(stack.upstream_requests())
    refusals["replayed"] = call(stack, token, "tools/call", {"name": "list_issues"}, proof=once, session=session)
    for why, response in refusals.items():
        assert response.status_code == 401, (why, response.text)
        challenge = response.headers.get_list("www-authenticate")
        assert challenge[0].startswith("DPoP ") and 'algs="' in challenge[0], (why, challenge)
        assert any(c.startswith("Bearer resource_metadata=") for c in challenge), (why, challenge)
    assert 'error="invalid_token"' in refusals["as Bearer"].headers["www-authenticate"]
    assert len(stack.upstream_requests()) == after_good == before + 1, "only the good proof's call reached the upstream"
    upstream = stack.upstream_requests()[-1]
    assert "dpop" not in upstream["headers"] and "authorization" not in upstream["headers"]

    deadline = time.monotonic() + 10
    records = []
    while time.monotonic() < deadline and not any(r.get("reason", "").startswith("sender_constraint.dpop.replayed") for r in records):
        records = stack.audit_records("request")
        time.sleep(0.1)
    bound = [r for r in records if r.get("token_binding") == "dpop"]
    assert bound and all(r["token_binding_key"] == prover.thumbprint() for r in bound)
    assert any(r.get("reason") == "sender_constraint.bound_token_as_bearer" for r in records)
    assert any(r.get("reason") == "sender_constraint.dpop.replayed" for r in records)

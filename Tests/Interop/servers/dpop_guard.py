"""ASGI middleware for the DPoP-bound upstream leg's tests: the upstream checks, as an RFC 9449
resource server does, that every request presents an exchanged token bound to a key
(`Authorization: DPoP`, `cnf.jkt`) with a valid proof of that key: one `DPoP` header, `typ`
dpop+jwt, an asymmetric `alg`, the signature by the header's public `jwk`, `htm` and `htu` of
this request, a recent `iat`, `ath` of the token, an unused `jti`, the key's RFC 7638
thumbprint equal to `cnf.jkt`, and its current nonce (RFC 9449 §9). The nonce changes every
`rotate_every` accepted requests without being announced, so the gateway meets
`use_dpop_nonce` more than once and must answer it by sending the request again.

Each verdict is appended to `verdicts` (one JSON object per line)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from urllib.parse import urlparse


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def thumbprint(jwk: dict) -> str:
    members = ("crv", "kty", "x", "y") if jwk.get("kty") == "EC" else ("e", "kty", "n")
    canonical = json.dumps({name: jwk[name] for name in members}, separators=(",", ":"), sort_keys=True)
    return b64(hashlib.sha256(canonical.encode()).digest())


class DPoPBoundTokenGuard:
    def __init__(self, app, issuer: str, audience: str, jwks_url: str, public_url: str, verdicts: str, rotate_every: int = 4):
        import jwt

        self.app = app
        self.jwt = jwt
        self.issuer = issuer
        self.audience = audience
        self.jwks = jwt.PyJWKClient(jwks_url)
        self.public_url = public_url
        self.path = urlparse(public_url).path
        self.verdicts = verdicts
        self.rotate_every = rotate_every
        self.nonce = secrets.token_urlsafe(16)
        self.accepted = 0
        self.seen_jti: set[str] = set()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != self.path:
            # Only the MCP endpoint is guarded (a readiness probe elsewhere gets the app's 404).
            return await self.app(scope, receive, send)
        headers: dict[str, list[str]] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
        verdict, jti = self.check(scope["method"], headers)
        with open(self.verdicts, "a", encoding="utf-8") as out:
            out.write(json.dumps({"method": scope["method"], "verdict": verdict, "jti": jti}) + "\n")
        if verdict == "ok":
            self.accepted += 1
            if self.accepted % self.rotate_every == 0:
                self.nonce = secrets.token_urlsafe(16)  # not announced: the next proof's nonce is stale
            return await self.app(scope, receive, send)
        if verdict == "use_dpop_nonce":
            challenge = 'DPoP error="use_dpop_nonce", error_description="a fresh nonce is required"'
        else:
            challenge = f'DPoP error="invalid_token", error_description="{verdict}"'
        body = json.dumps({"error": "use_dpop_nonce" if verdict == "use_dpop_nonce" else "invalid_token", "reason": verdict}).encode()
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", challenge.encode()), (b"dpop-nonce", self.nonce.encode()),
        ]})
        await send({"type": "http.response.body", "body": body})

    def check(self, method: str, headers: dict[str, list[str]]) -> tuple[str, str | None]:
        authorization = headers.get("authorization", [])
        if len(authorization) != 1 or not authorization[0].startswith("DPoP "):
            return "no DPoP-bound token (Authorization: DPoP)", None
        token = authorization[0][len("DPoP "):]
        try:
            key = self.jwks.get_signing_key_from_jwt(token)
            claims = self.jwt.decode(token, key.key, algorithms=["ES256", "RS256"], audience=self.audience, issuer=self.issuer)
        except Exception as error:  # noqa: BLE001 - any failure is a refusal
            return f"token refused: {error}", None
        jkt = (claims.get("cnf") or {}).get("jkt")
        if not jkt:
            return "the token is not bound (no cnf.jkt)", None
        if "act" not in claims:
            return "no act claim: not an exchanged token", None
        proofs = headers.get("dpop", [])
        if len(proofs) != 1:
            return f"{len(proofs)} DPoP headers", None
        try:
            header = self.jwt.get_unverified_header(proofs[0])
            if header.get("typ") != "dpop+jwt" or header.get("alg") not in ("ES256", "RS256") or "jwk" not in header:
                return f"bad proof header {header}", None
            if any(private in header["jwk"] for private in ("d", "p", "q")):
                return "a private key in the proof", None
            public = self.jwt.PyJWK(header["jwk"], algorithm=header["alg"])
            proof = self.jwt.decode(proofs[0], public.key, algorithms=[header["alg"]], options={"verify_aud": False})
        except Exception as error:  # noqa: BLE001
            return f"proof refused: {error}", None
        jti = proof.get("jti")
        if not jti or jti in self.seen_jti:
            return "replayed or missing jti", jti
        if proof.get("htm") != method or proof.get("htu") != self.public_url:
            return f"htm/htu {proof.get('htm')} {proof.get('htu')} do not name {method} {self.public_url}", jti
        if abs(time.time() - int(proof.get("iat", 0))) > 60:
            return "stale iat", jti
        if proof.get("ath") != b64(hashlib.sha256(token.encode()).digest()):
            return "wrong ath", jti
        if thumbprint(header["jwk"]) != jkt:
            return "the proof's key is not the token's cnf.jkt", jti
        if proof.get("nonce") != self.nonce:
            return "use_dpop_nonce", jti
        self.seen_jti.add(jti)
        return "ok", jti

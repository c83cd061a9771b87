"""A tiny OpenID Connect provider on 127.0.0.1 for tests: the authorization code flow, nothing more.

/authorize redirects straight back with a code (the person is taken as logged in), /token answers
with an ID token signed RS256 by a key made at start, /jwks publishes that key, /userinfo returns
the claims a test set for the next login.
"""

import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm


class TinyOIDCProvider:
    def __init__(self, *, client_id: str, client_secret: str):
        self.client_id, self.client_secret = client_id, client_secret
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = secrets.token_hex(4)
        self.claims: dict = {}  # what /userinfo (and, in part, the ID token) says about the person
        self._nonces: dict[str, str] = {}  # code -> the nonce of its authorization request
        self._access_tokens: set[str] = set()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "TinyOIDCProvider":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def endpoints(self) -> dict[str, str]:
        """The provider's endpoints as mozilla-django-oidc's settings name them."""
        return {
            "OIDC_OP_AUTHORIZATION_ENDPOINT": f"{self.url}/authorize",
            "OIDC_OP_TOKEN_ENDPOINT": f"{self.url}/token",
            "OIDC_OP_USER_ENDPOINT": f"{self.url}/userinfo",
            "OIDC_OP_JWKS_ENDPOINT": f"{self.url}/jwks",
        }

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str], dict]:
        if query.get("client_id") != self.client_id or query.get("response_type") != "code":
            return 400, {}, {"error": "invalid_request"}
        code = secrets.token_urlsafe(16)
        self._nonces[code] = query.get("nonce", "")
        location = query["redirect_uri"] + "?" + urlencode({"code": code, "state": query["state"]})
        return 302, {"Location": location}, {}

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, str], dict]:
        known = form.get("code") in self._nonces
        if not known or (form.get("client_id"), form.get("client_secret")) != (
            self.client_id,
            self.client_secret,
        ):
            return 400, {}, {"error": "invalid_grant"}
        nonce = self._nonces.pop(form["code"])
        now = int(time.time())
        id_token = jwt.encode(
            {
                "iss": self.url,
                "aud": self.client_id,
                "sub": self.claims.get("sub", "person-1"),
                "email": self.claims.get("email"),
                "iat": now,
                "exp": now + 300,
                "nonce": nonce,
            },
            self.key,
            algorithm="RS256",
            headers={"kid": self.kid},
        )
        access_token = secrets.token_urlsafe(16)
        self._access_tokens.add(access_token)
        return 200, {}, {"access_token": access_token, "token_type": "Bearer", "id_token": id_token}

    def userinfo(self, authorization: str) -> tuple[int, dict[str, str], dict]:
        if authorization.removeprefix("Bearer ") not in self._access_tokens:
            return 401, {}, {"error": "invalid_token"}
        return 200, {}, self.claims

    def jwks(self) -> tuple[int, dict[str, str], dict]:
        public = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        return 200, {}, {"keys": [public | {"kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def _handler(self):
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                url = urlsplit(self.path)
                query = {name: values[0] for name, values in parse_qs(url.query).items()}
                routes = {
                    "/authorize": lambda: provider.authorize(query),
                    "/userinfo": lambda: provider.userinfo(self.headers.get("Authorization", "")),
                    "/jwks": provider.jwks,
                }
                self._answer(*routes[url.path]() if url.path in routes else (404, {}, {}))

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                form = {name: values[0] for name, values in parse_qs(body).items()}
                self._answer(*provider.token(form) if self.path == "/token" else (404, {}, {}))

            def _answer(self, status: int, headers: dict[str, str], body: dict) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):  # keep the test output quiet
                pass

        return Handler

"""HTTP digest authentication with SHA-256 (RFC 7616), as Shelly Gen2+ devices use it.

Written here because the aiohttp on Venus OS predates aiohttp's own digest support.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field

_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^\s,]+))')


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def parse_challenge(header: str) -> dict[str, str]:
    """The parameters of a `WWW-Authenticate: Digest ...` header (empty if not digest)."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "digest":
        return {}
    return {
        m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
        for m in _PARAM.finditer(rest)
    }


def response_hash(
    *, user: str, realm: str, password: str, method: str, uri: str, nonce: str, nc: int, cnonce: str
) -> str:
    ha1 = sha256(f"{user}:{realm}:{password}")
    ha2 = sha256(f"{method}:{uri}")
    return sha256(f"{ha1}:{nonce}:{nc:08x}:{cnonce}:auth:{ha2}")


@dataclass
class DigestAuth:
    """Answers a device's challenge; reuses its nonce with a growing count."""

    user: str
    password: str = field(repr=False)
    realm: str = ""
    nonce: str = ""
    nc: int = 0

    @property
    def ready(self) -> bool:
        return bool(self.nonce)

    def challenge(self, header: str) -> bool:
        """Take a new challenge; False when it is not a SHA-256 digest challenge."""
        params = parse_challenge(header)
        if not params.get("nonce") or params.get("algorithm", "SHA-256").upper() != "SHA-256":
            return False
        self.realm, self.nonce, self.nc = params.get("realm", ""), params["nonce"], 0
        return True

    def header(self, method: str, uri: str) -> str:
        self.nc += 1
        cnonce = os.urandom(8).hex()
        digest = response_hash(
            user=self.user,
            realm=self.realm,
            password=self.password,
            method=method,
            uri=uri,
            nonce=self.nonce,
            nc=self.nc,
            cnonce=cnonce,
        )
        return (
            f'Digest username="{self.user}", realm="{self.realm}", nonce="{self.nonce}", '
            f'uri="{uri}", algorithm=SHA-256, response="{digest}", qop=auth, '
            f'nc={self.nc:08x}, cnonce="{cnonce}"'
        )

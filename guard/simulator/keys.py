"""The simulator's RSA key pair, in the SDK's key format, and signature verification.

The SDK signs with ``Config.private_key``: base64 of ``<RSAKeyValue><Modulus>..</Modulus>
<Exponent>..</Exponent><D>..</D>...</RSAKeyValue>`` (each value a big-endian integer in base64).
The simulator keeps only the public half to verify ``X-Signature`` (hex PKCS#1 v1.5 SHA-256).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

__all__ = ["SimKeyPair", "generate_key_pair", "xml_private_key"]


def _b64int(value: int) -> str:
    length = max(1, (value.bit_length() + 7) // 8)
    return base64.b64encode(value.to_bytes(length, "big")).decode("ascii")


def xml_private_key(key: rsa.RSAPrivateKey) -> str:
    """Encode ``key`` as the SDK expects ``private_key``: base64 of the .NET XML form."""
    priv = key.private_numbers()
    pub = priv.public_numbers
    parts = {
        "Modulus": pub.n,
        "Exponent": pub.e,
        "P": priv.p,
        "Q": priv.q,
        "DP": priv.dmp1,
        "DQ": priv.dmq1,
        "InverseQ": priv.iqmp,
        "D": priv.d,
    }
    xml = "<RSAKeyValue>" + "".join(f"<{k}>{_b64int(v)}</{k}>" for k, v in parts.items())
    xml += "</RSAKeyValue>"
    return base64.b64encode(xml.encode("ascii")).decode("ascii")


@dataclass(frozen=True)
class SimKeyPair:
    """A generated key: the client gets ``private_key_b64``; the server keeps ``public_key``."""

    private_key_b64: str
    public_key: rsa.RSAPublicKey

    def verify(self, body: bytes, signature_hex: str) -> bool:
        """True when ``signature_hex`` is a valid signature of exactly ``body``."""
        try:
            signature = bytes.fromhex(signature_hex.strip())
        except ValueError:
            return False
        try:
            self.public_key.verify(signature, body, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return False
        return True


def generate_key_pair(bits: int = 2048) -> SimKeyPair:
    """A fresh key for one simulator run; 2048 bits like SSI's, 1024 where tests need speed."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return SimKeyPair(private_key_b64=xml_private_key(key), public_key=key.public_key())

"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

Key material: a `whsec_<base64>` secret (the standard form, what generate_secret
makes) is used as its decoded bytes. Any other secret a user supplies (no `whsec_`
prefix, or a prefix followed by something that is not strict standard base64) is used
as its raw UTF-8 bytes. Receivers using the standardwebhooks library must then pass
bytes, `Webhook(secret.encode())`: given a plain str the library base64-decodes it
leniently and would compute a different key.
"""

from __future__ import annotations

import base64
import binascii
import math
import os
from datetime import UTC, datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"


def generate_secret() -> str:
    """A new standard secret: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(os.urandom(32)).decode("ascii")


def signing_key(secret: str) -> bytes:
    """The HMAC key bytes for a user-facing secret (see module docstring)."""
    if secret.startswith(SECRET_PREFIX):
        encoded = secret[len(SECRET_PREFIX) :]
        try:
            # Strict: the library's lenient decode silently drops bad characters, which
            # would turn a typo into a different key instead of a raw-bytes secret.
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if key:
            return key
    raw = secret.encode("utf-8")
    if not raw:
        raise ValueError("webhook secret may not be empty")
    return raw


def signed_headers(secret: str, msg_id: str, timestamp: datetime, body: str) -> dict[str, str]:
    """Headers for one POST of `body` (the exact text sent, UTF-8 encoded)."""
    if timestamp.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware")
    # Webhook.sign() replaces tzinfo with UTC instead of converting, so convert first.
    ts = timestamp.astimezone(UTC)
    signature = Webhook(signing_key(secret)).sign(msg_id, ts, body)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(math.floor(ts.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }

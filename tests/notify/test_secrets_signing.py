"""Secrets at rest (Fernet) and Standard Webhooks signing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import stat
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, InvalidToken
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from app.config import Settings, load_settings
from app.notify.secrets import decrypt, encrypt, load_cipher
from app.notify.signing import generate_secret, signed_headers, signing_key


def key_settings(**kw: object) -> Settings:
    return load_settings(database_url="sqlite:///unused.db", **kw)


# -- secrets -------------------------------------------------------------------------


def test_configured_key_round_trips_and_is_cached() -> None:
    key = Fernet.generate_key().decode()
    cipher = load_cipher(key_settings(secret_key=key))
    token = encrypt(cipher, "whsec_abc ✓")
    assert token != "whsec_abc ✓"
    assert decrypt(load_cipher(key_settings(secret_key=key)), token) == "whsec_abc ✓"
    assert load_cipher(key_settings(secret_key=key)) is cipher


def test_key_file_is_created_0600_then_reused(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "lossmon.secret"
    settings = key_settings(secret_key=None, secret_key_file=str(path))
    token = encrypt(load_cipher(settings), "s3cret")

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    Fernet(path.read_bytes().strip())  # a valid key
    assert os.listdir(path.parent) == ["lossmon.secret"]  # no temp file left behind
    assert decrypt(load_cipher(settings), token) == "s3cret"  # same key the next time


def test_existing_key_file_is_used(tmp_path: Path) -> None:
    key = Fernet.generate_key()
    path = tmp_path / "k"
    path.write_bytes(key + b"\n")
    path.chmod(0o600)
    cipher = load_cipher(key_settings(secret_key=None, secret_key_file=str(path)))
    assert Fernet(key).decrypt(encrypt(cipher, "x").encode()) == b"x"
    assert path.read_bytes() == key + b"\n"  # untouched


def test_configured_key_wins_over_file(tmp_path: Path) -> None:
    path = tmp_path / "k"
    key = Fernet.generate_key().decode()
    load_cipher(key_settings(secret_key=key, secret_key_file=str(path)))
    assert not path.exists()


def test_bad_key_is_reported_with_its_source() -> None:
    with pytest.raises(ValueError, match="LOSSMON_SECRET_KEY"):
        load_cipher(key_settings(secret_key="not-a-key"))


def test_wrong_key_cannot_decrypt() -> None:
    token = encrypt(load_cipher(key_settings(secret_key=Fernet.generate_key().decode())), "x")
    other = load_cipher(key_settings(secret_key=Fernet.generate_key().decode()))
    with pytest.raises(InvalidToken):
        decrypt(other, token)


# -- signing -------------------------------------------------------------------------

NOW = datetime.now(UTC).replace(microsecond=123456)
BODY = '{"type":"alert.firing","note":"naïve ✓"}'


def test_generated_secret_is_standard() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    assert generate_secret() != secret


def test_headers_verify_with_the_reference_library() -> None:
    # The reference library refuses timestamps over 5 min old: sign at the test's own time,
    # not at import time (a long suite runs past that tolerance).
    now = datetime.now(UTC)
    secret = generate_secret()
    headers = signed_headers(secret, "msg_1", now, BODY)

    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-timestamp"] == str(int(now.timestamp()))
    assert headers["content-type"] == "application/json"
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(secret).verify(BODY.encode(), headers) == {
        "type": "alert.firing",
        "note": "naïve ✓",
    }
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace("firing", "resolved"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, {**headers, "webhook-id": "msg_2"})


def test_signature_is_hmac_sha256_of_id_timestamp_body() -> None:
    raw = os.urandom(24)
    secret = "whsec_" + base64.b64encode(raw).decode()
    headers = signed_headers(secret, "msg_x", NOW, BODY)
    ts = headers["webhook-timestamp"]
    mac = hmac.new(raw, f"msg_x.{ts}.{BODY}".encode(), hashlib.sha256).digest()
    assert headers["webhook-signature"] == "v1," + base64.b64encode(mac).decode()


def test_plain_user_secret_uses_its_utf8_bytes() -> None:
    now = datetime.now(UTC)
    secret = "correct horse battery staple ✓"
    assert signing_key(secret) == secret.encode()
    headers = signed_headers(secret, "msg_1", now, BODY)
    Webhook(secret.encode()).verify(BODY, headers)  # receivers pass bytes


@pytest.mark.parametrize("secret", ["whsec_not base64!", "whsec_", "whsec_a-b_c"])
def test_whsec_with_invalid_base64_falls_back_to_raw_bytes(secret: str) -> None:
    assert signing_key(secret) == secret.encode()


def test_unpadded_whsec_is_accepted() -> None:
    assert signing_key("whsec_YWJjZA") == b"abcd"


def test_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        signed_headers("", "msg_1", NOW, BODY)


def test_timestamp_timezone_is_converted_not_replaced() -> None:
    secret = generate_secret()
    local = NOW.astimezone(timezone(timedelta(hours=5, minutes=30)))
    assert signed_headers(secret, "m", local, BODY) == signed_headers(secret, "m", NOW, BODY)
    with pytest.raises(ValueError, match="timezone"):
        signed_headers(secret, "m", NOW.replace(tzinfo=None), BODY)

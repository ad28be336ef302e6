"""Webhook secrets at rest: Fernet-encrypted with a server key.

The key comes from `settings.secret_key`, else from `settings.secret_key_file`, which
is created (0600) the first time. Losing the key makes stored secrets unreadable, so
the file is published without ever clobbering an existing one: two processes racing
to create it must end up with the same key, or one of them would encrypt with a key
that is then overwritten.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
import threading
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from app.config import Settings

__all__ = ["InvalidToken", "decrypt", "encrypt", "load_cipher"]

log = logging.getLogger(__name__)

_ciphers: dict[bytes, Fernet] = {}
_lock = threading.Lock()


def load_cipher(settings: Settings) -> Fernet:
    """The Fernet for the configured key (cached per key)."""
    if settings.secret_key:
        key = settings.secret_key.strip().encode("ascii")
        source = "LOSSMON_SECRET_KEY"
    else:
        path = Path(settings.secret_key_file)
        key = _read_or_create_key(path)
        source = str(path)
    with _lock:
        cipher = _ciphers.get(key)
        if cipher is None:
            try:
                cipher = Fernet(key)
            except ValueError as exc:
                raise ValueError(
                    f"secret key from {source} is not a Fernet key "
                    "(urlsafe base64 of 32 bytes; make one with Fernet.generate_key())"
                ) from exc
            _ciphers[key] = cipher
    return cipher


def encrypt(cipher: Fernet, secret: str) -> str:
    return cipher.encrypt(secret.encode("utf-8")).decode("ascii")


def decrypt(cipher: Fernet, token: str) -> str:
    """Raises cryptography.fernet.InvalidToken if the key is not the one that encrypted."""
    return cipher.decrypt(token.encode("ascii")).decode("utf-8")


def _read_or_create_key(path: Path) -> bytes:
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    # mkstemp creates the file 0600, so the key is never readable by others, even briefly.
    fd, tmp = tempfile.mkstemp(prefix=".lossmon-key-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(key + b"\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            # link() fails if the target exists (unlike replace()): the first writer wins
            # and everyone else reads its key.
            os.link(tmp, path)
        except FileExistsError:
            return _read_key(path)
        _fsync_dir(path.parent)
        log.warning("created a new webhook secret key file %s; back it up", path)
        return key
    finally:
        os.unlink(tmp)


def _read_key(path: Path) -> bytes:
    key = path.read_bytes().strip()
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("secret key file %s is readable by group/others; chmod 600 it", path)
    return key


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the file itself is synced
    finally:
        os.close(fd)

"""The hub's Ed25519 identity: the key pair that signs every request the hub makes to the council.

The key pair is made on the hub and the private half never leaves it: the council only ever
sees the public key (at enrollment) and signatures. So this module guards the private key in
every way it can leak on a small Linux box:

- The file is created mode 0600 from its first byte (mkstemp creates 0600 whatever the umask;
  an explicit fchmod repairs a umask that narrowed it further) and moved into place by a hard
  link (no overwrite) or a rename (overwrite), so no reader ever sees a partial or a
  world-readable key, and a power cut leaves the old key or the new one.
- `load` refuses a key that group or others can access, or that another user owns, the way
  ssh refuses a private key with loose permissions, and says how to fix it.
- The object never shows the key: repr/str show only the public key, and pickling or copying
  is refused so the key cannot end up in a cache, a queue or a crash dump by accident.

The file is unencrypted PKCS#8 PEM: a Pi has no TPM and a passphrase would have to sit on the
same SD card, so file permissions are the protection, as for ssh host keys.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, NoReturn

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hub.fsutil import fsync_directory

__all__ = ["KEY_FILENAME", "HubIdentity", "KeyFileError"]

KEY_FILENAME = "hub_key.pem"
_KEY_MODE = 0o600
_TMP_PREFIX = f".{KEY_FILENAME}."
_TMP_SUFFIX = ".tmp"


class KeyFileError(Exception):
    """The key file is missing, unsafe or unreadable. The message says what to do; it never
    contains key material."""


class HubIdentity:
    """The hub's key pair. Make one with `generate` (once, at enrollment) or `load`."""

    __slots__ = ("_path", "_private_key", "_public_raw")

    def __init__(self, private_key: Ed25519PrivateKey, path: Path) -> None:
        self._private_key = private_key
        self._path = path
        self._public_raw = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @classmethod
    def generate(cls, directory: Path, *, overwrite: bool = False) -> HubIdentity:
        """Make a new key pair on this hub and write the private key to `directory`.

        Refuses to replace an existing key unless `overwrite` is true: losing the key means
        re-enrolling the hub, so that must be a deliberate act.
        """
        directory = Path(directory)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = directory / KEY_FILENAME
        if not overwrite and os.path.lexists(path):
            raise KeyFileError(
                f"{path} already exists; refusing to replace the hub's key "
                "(the hub would have to be enrolled again). Pass overwrite=True to replace it."
            )
        _remove_stale_temp_files(directory)
        private_key = Ed25519PrivateKey.generate()
        pem = private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_private_file(path, pem, overwrite=overwrite)
        return cls(private_key, path)

    @classmethod
    def load(cls, directory: Path) -> HubIdentity:
        """Read the key from `directory`, refusing a file others could read or that is not ours."""
        path = Path(directory) / KEY_FILENAME
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise KeyFileError(
                f"no hub key at {path}; enroll the hub first (hearth enroll)"
            ) from None
        except OSError as exc:
            raise KeyFileError(f"cannot open the hub key {path}: {exc.strerror}") from None
        try:
            # fstat on the open file, not stat on the path: the file we check is the one we read.
            st = os.fstat(fd)
            _check_private_file(path, st)
            data = _read_all(fd)
        finally:
            os.close(fd)
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise KeyFileError(
                f"{path} is not a readable unencrypted PEM private key; "
                "restore it from backup or enroll the hub again"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"{path} holds a private key that is not Ed25519")
        return cls(key, path)

    @property
    def path(self) -> Path:
        """Where the private key lives (the path only; safe to log)."""
        return self._path

    def public_key_raw(self) -> bytes:
        """The 32-byte raw Ed25519 public key."""
        return self._public_raw

    def public_key_b64(self) -> str:
        """The public key as standard base64 (with padding) of its 32 raw bytes, as enrolled."""
        return base64.b64encode(self._public_raw).decode("ascii")

    def fingerprint(self) -> str:
        """A short public-key fingerprint for logs and the installer's screen."""
        return "SHA256:" + hashlib.sha256(self._public_raw).hexdigest()[:16]

    def sign(self, message: bytes) -> bytes:
        """A 64-byte Ed25519 signature of `message`."""
        return self._private_key.sign(message)

    def __repr__(self) -> str:
        return f"HubIdentity(public_key={self.public_key_b64()!r}, path={str(self._path)!r})"

    __str__ = __repr__

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        # Blocks pickle, copy and deepcopy: the only serialised form of the key is its file.
        raise TypeError("HubIdentity holds a private key and cannot be pickled or copied")


def _check_private_file(path: Path, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(f"{path} is not a regular file")
    uid = os.geteuid()
    if st.st_uid != uid:
        raise KeyFileError(
            f"{path} is owned by uid {st.st_uid}, not by the user running hearth (uid {uid}); "
            f"a key another user owns could have been replaced or read. Fix: "
            f"chown {uid} {path} && chmod 600 {path}"
        )
    loose = stat.S_IMODE(st.st_mode) & 0o077
    if loose:
        raise KeyFileError(
            f"{path} has mode {stat.S_IMODE(st.st_mode):04o}: group or others can access the "
            f"hub's private key. Fix: chmod 600 {path} (and re-enroll the hub if the key may "
            "have been copied)"
        )


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _write_private_file(path: Path, data: bytes, *, overwrite: bool) -> None:
    """Write `data` so that it is never visible with a mode wider than 0600 nor half written.

    The temporary file comes from mkstemp, which creates it O_EXCL with mode 0600 (a umask can
    only narrow that); fchmod then sets exactly 0600. Without `overwrite` the file is put in
    place with link(2), which fails if the target exists, so two enrollments racing cannot
    silently replace each other's key.
    """
    directory = path.parent
    fd, tmp_name = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=_TMP_SUFFIX, dir=directory)
    tmp = Path(tmp_name)
    try:
        try:
            os.fchmod(fd, _KEY_MODE)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise KeyFileError(
                    f"{path} appeared while the key was being made; refusing to replace it"
                ) from None
            tmp.unlink()
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_directory(directory)


def _remove_stale_temp_files(directory: Path) -> None:
    """A power cut between link and unlink can leave a copy of a key behind; remove it."""
    for stale in directory.glob(f"{_TMP_PREFIX}*{_TMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            stale.unlink()

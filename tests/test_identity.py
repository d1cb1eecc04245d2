"""The hub's key pair: private from its first byte, refused when loose, never shown."""

from __future__ import annotations

import base64
import copy
import logging
import os
import pickle
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from hub.identity import KEY_FILENAME, HubIdentity, KeyFileError


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_zero() -> Iterator[None]:
    """The most permissive umask: whatever protects the key must not rely on the umask."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _secret_forms(key_dir: Path) -> list[str]:
    """Every spelling of the private key that could leak: raw hex/base64, DER hex, PEM lines."""
    pem = (key_dir / KEY_FILENAME).read_bytes()
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, Ed25519PrivateKey)
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pem_lines = [line for line in pem.decode().splitlines() if not line.startswith("-----")]
    forms = [raw.hex(), base64.b64encode(raw).decode(), der.hex(), *pem_lines, repr(raw)]
    # The check is only meaningful if these forms really are in the file.
    assert base64.b64encode(der).decode() == "".join(pem_lines)
    return forms


def test_generate_then_load_round_trip(tmp_path: Path) -> None:
    made = HubIdentity.generate(tmp_path / "keys")
    loaded = HubIdentity.load(tmp_path / "keys")
    assert loaded.public_key_b64() == made.public_key_b64()
    assert len(base64.b64decode(made.public_key_b64(), validate=True)) == 32
    assert loaded.path == tmp_path / "keys" / KEY_FILENAME
    signature = loaded.sign(b"hello council")
    assert len(signature) == 64
    public = Ed25519PublicKey.from_public_bytes(made.public_key_raw())
    public.verify(signature, b"hello council")  # raises if wrong


def test_two_generated_keys_differ(tmp_path: Path) -> None:
    a = HubIdentity.generate(tmp_path / "a")
    b = HubIdentity.generate(tmp_path / "b")
    assert a.public_key_b64() != b.public_key_b64()


def test_key_file_is_0600_and_no_temp_file_remains(tmp_path: Path, umask_zero: None) -> None:
    HubIdentity.generate(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [KEY_FILENAME]
    assert _mode(tmp_path / KEY_FILENAME) == 0o600
    assert (tmp_path / KEY_FILENAME).stat().st_uid == os.geteuid()


def test_new_key_directory_is_0700(tmp_path: Path, umask_zero: None) -> None:
    HubIdentity.generate(tmp_path / "fresh")
    assert _mode(tmp_path / "fresh") == 0o700


def test_key_bytes_are_never_in_a_file_others_can_read(
    tmp_path: Path, umask_zero: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Look at the mode of the file being written at the moment each key byte is written, and
    at every file in the directory then: 'chmod after writing' would fail here."""
    seen: list[int] = []
    real_write = os.write

    def spying_write(fd: int, data: bytes | memoryview) -> int:
        seen.append(stat.S_IMODE(os.fstat(fd).st_mode))
        for entry in tmp_path.iterdir():
            seen.append(_mode(entry))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", spying_write)
    HubIdentity.generate(tmp_path)
    monkeypatch.undo()
    assert seen, "the key was not written through os.write; the spy saw nothing"
    assert all(mode & 0o077 == 0 for mode in seen), [f"{m:04o}" for m in seen]


def test_a_narrow_umask_still_leaves_a_usable_key(tmp_path: Path) -> None:
    old = os.umask(0o777)
    try:
        HubIdentity.generate(tmp_path)
    finally:
        os.umask(old)
    assert _mode(tmp_path / KEY_FILENAME) == 0o600
    HubIdentity.load(tmp_path)


def test_generate_refuses_to_replace_a_key(tmp_path: Path) -> None:
    first = HubIdentity.generate(tmp_path)
    before = (tmp_path / KEY_FILENAME).read_bytes()
    with pytest.raises(KeyFileError, match="overwrite=True"):
        HubIdentity.generate(tmp_path)
    assert (tmp_path / KEY_FILENAME).read_bytes() == before
    assert HubIdentity.load(tmp_path).public_key_b64() == first.public_key_b64()
    assert sorted(p.name for p in tmp_path.iterdir()) == [KEY_FILENAME]


def test_generate_refuses_even_a_dangling_symlink(tmp_path: Path) -> None:
    (tmp_path / KEY_FILENAME).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(KeyFileError):
        HubIdentity.generate(tmp_path)
    assert not (tmp_path / "elsewhere").exists()


def test_generate_with_overwrite_replaces_the_key(tmp_path: Path, umask_zero: None) -> None:
    first = HubIdentity.generate(tmp_path)
    os.chmod(tmp_path / KEY_FILENAME, 0o644)  # even a loose old file ends up 0600
    second = HubIdentity.generate(tmp_path, overwrite=True)
    assert second.public_key_b64() != first.public_key_b64()
    assert HubIdentity.load(tmp_path).public_key_b64() == second.public_key_b64()
    assert _mode(tmp_path / KEY_FILENAME) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [KEY_FILENAME]


def test_generate_removes_a_key_copy_left_by_a_power_cut(tmp_path: Path) -> None:
    stale = tmp_path / f".{KEY_FILENAME}.abc123.tmp"
    stale.write_bytes(b"half a key")
    HubIdentity.generate(tmp_path)
    assert not stale.exists()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o602, 0o610, 0o700])
def test_load_refuses_a_key_others_can_access(tmp_path: Path, mode: int) -> None:
    HubIdentity.generate(tmp_path)
    key = tmp_path / KEY_FILENAME
    os.chmod(key, mode)
    if mode & 0o077 == 0:
        HubIdentity.load(tmp_path)  # 0700: odd but private; allowed
        return
    with pytest.raises(KeyFileError) as excinfo:
        HubIdentity.load(tmp_path)
    message = str(excinfo.value)
    assert f"chmod 600 {key}" in message
    assert f"{mode:04o}" in message
    os.chmod(key, 0o600)
    HubIdentity.load(tmp_path)


def test_load_refuses_a_key_another_user_owns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    HubIdentity.generate(tmp_path)
    me = os.geteuid()
    monkeypatch.setattr(os, "geteuid", lambda: me + 1)
    with pytest.raises(KeyFileError, match=r"owned by uid \d+.*chown"):
        HubIdentity.load(tmp_path)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_load_refuses_a_key_chowned_to_nobody(tmp_path: Path) -> None:
    HubIdentity.generate(tmp_path)
    os.chown(tmp_path / KEY_FILENAME, 65534, -1)
    with pytest.raises(KeyFileError, match="owned by uid 65534"):
        HubIdentity.load(tmp_path)


def test_load_without_a_key_says_to_enroll(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="hearth enroll"):
        HubIdentity.load(tmp_path)


def test_load_refuses_a_directory_in_place_of_the_key(tmp_path: Path) -> None:
    (tmp_path / KEY_FILENAME).mkdir(mode=0o700)
    with pytest.raises(KeyFileError):
        HubIdentity.load(tmp_path)


def test_load_refuses_garbage(tmp_path: Path) -> None:
    key = tmp_path / KEY_FILENAME
    key.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    os.chmod(key, 0o600)
    with pytest.raises(KeyFileError, match="not a readable"):
        HubIdentity.load(tmp_path)


def test_load_refuses_a_key_that_is_not_ed25519(tmp_path: Path) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    key = tmp_path / KEY_FILENAME
    key.write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(key, 0o600)
    with pytest.raises(KeyFileError, match="not Ed25519"):
        HubIdentity.load(tmp_path)


def test_private_key_never_in_repr_str_or_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ident = HubIdentity.generate(tmp_path)
    secrets = _secret_forms(tmp_path)
    caplog.set_level(logging.DEBUG)
    log = logging.getLogger("hearth.test")
    log.info("identity %s", ident)
    log.info("identity %r", ident)
    log.info("dict %s", {"identity": ident})
    try:
        raise RuntimeError(ident)
    except RuntimeError:
        log.exception("failed with %r", ident)
    shown = [repr(ident), str(ident), f"{ident}", format(ident, ""), caplog.text]
    # The public key is what identifies the hub in logs.
    assert ident.public_key_b64() in repr(ident)
    for text in shown:
        for secret in secrets:
            assert secret not in text


def test_load_errors_never_carry_key_material(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    HubIdentity.generate(tmp_path)
    secrets = _secret_forms(tmp_path)
    messages = []
    os.chmod(tmp_path / KEY_FILENAME, 0o644)
    with pytest.raises(KeyFileError) as loose:
        HubIdentity.load(tmp_path)
    messages.append(str(loose.value))
    os.chmod(tmp_path / KEY_FILENAME, 0o600)
    # A truncated key: parsing fails; neither the message nor a chained cause may show the bytes.
    key = tmp_path / KEY_FILENAME
    key.write_bytes(key.read_bytes()[:-40])
    with pytest.raises(KeyFileError) as broken:
        HubIdentity.load(tmp_path)
    assert broken.value.__cause__ is None
    assert broken.value.__suppress_context__
    messages.append(str(broken.value))
    for text in messages:
        for secret in secrets:
            assert secret not in text


def test_identity_cannot_be_pickled_or_copied(tmp_path: Path) -> None:
    ident = HubIdentity.generate(tmp_path)
    with pytest.raises(TypeError):
        pickle.dumps(ident)
    with pytest.raises(TypeError):
        copy.copy(ident)
    with pytest.raises(TypeError):
        copy.deepcopy(ident)
    assert not hasattr(ident, "__dict__")

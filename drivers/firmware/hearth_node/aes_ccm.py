"""AES-CCM encryption (RFC 3610, NIST SP 800-38C) built from a one-block AES-ECB primitive.

Why this module exists: BTHome v2 encrypts with AES-128-CCM and a 4-byte MIC, but
MicroPython's `cryptolib` offers only raw AES in ECB mode (CBC and CTR on some ports) and no
MicroPython library implements CCM. CCM is two textbook modes around the same key, so we
compose it here from single-block ECB calls:

- authenticity: a CBC-MAC over a first block B0 (flags, nonce, message length), the
  optional associated data and the zero-padded message; its first `tag_len` bytes are the tag;
- confidentiality: CTR mode with counter blocks A_i (flags, nonce, i); A_0's keystream
  masks the tag (giving the MIC) and A_1, A_2, ... encrypt the message.

Only encryption is here: a node never decrypts. The hub decrypts with `cryptography`'s
AESCCM (through bthome-ble), and the tests check this module against it.

The cipher is any object with `encrypt(block) -> bytes` for one 16-byte block: on the node
`cryptolib.aes(key, 1)` (mode 1 = ECB), on CPython a wrapper around `cryptography`.
"""

# MicroPython has no typing module, so no `from typing import TYPE_CHECKING`: mypy treats any
# name TYPE_CHECKING as true, and the imports below only ever run in the type checker.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Protocol

    class BlockCipher(Protocol):
        """AES keyed once, encrypting one 16-byte block per call (ECB)."""

        def encrypt(self, __block: bytes) -> bytes: ...


BLOCK = 16


def _check(nonce_len: int, tag_len: int, msg_len: int, aad_len: int) -> int:
    """Validate the CCM parameters; return L, the size in bytes of the length field."""
    if not 7 <= nonce_len <= 13:
        raise ValueError("CCM nonce must be 7 to 13 bytes")
    if tag_len not in (4, 6, 8, 10, 12, 14, 16):
        raise ValueError("CCM tag length must be an even number from 4 to 16")
    size_len = 15 - nonce_len
    if msg_len >= 1 << (8 * size_len):
        raise ValueError("message too long for this nonce size")
    if aad_len >= 0xFF00:
        # Longer associated data needs the 6-byte length form; BTHome uses none at all.
        raise ValueError("associated data longer than 65279 bytes is not supported")
    return size_len


def _mac_step(cipher: "BlockCipher", state: bytes, data: bytes, start: int) -> bytes:
    """One CBC-MAC step: encrypt(state XOR the 16 bytes of data from start, zero-padded)."""
    block = bytearray(state)
    end = min(start + BLOCK, len(data))
    for i in range(start, end):
        block[i - start] ^= data[i]
    return cipher.encrypt(bytes(block))


def encrypt(
    cipher: "BlockCipher",
    nonce: bytes,
    plaintext: bytes,
    aad: bytes = b"",
    tag_len: int = 4,
) -> tuple[bytes, bytes]:
    """Encrypt and authenticate; return (ciphertext, mic).

    The ciphertext has the plaintext's length. A nonce must never be used twice with the
    same key: CTR mode would then leak the XOR of the two messages.
    """
    size_len = _check(len(nonce), tag_len, len(plaintext), len(aad))

    # B0: flags (Adata bit 6, M' = (tag_len-2)/2 in bits 3-5, L' = L-1 in bits 0-2),
    # the nonce, then the message length big-endian in L bytes.
    flags = (0x40 if aad else 0) | (((tag_len - 2) // 2) << 3) | (size_len - 1)
    mac = cipher.encrypt(bytes([flags]) + nonce + len(plaintext).to_bytes(size_len, "big"))

    # Associated data, prefixed by its 2-byte length, zero-padded to whole blocks.
    if aad:
        header = len(aad).to_bytes(2, "big") + aad
        for start in range(0, len(header), BLOCK):
            mac = _mac_step(cipher, mac, header, start)

    for start in range(0, len(plaintext), BLOCK):
        mac = _mac_step(cipher, mac, plaintext, start)

    # CTR: A_i = flags (L' only), nonce, counter i big-endian in L bytes.
    prefix = bytes([size_len - 1]) + nonce
    out = bytearray(plaintext)
    for index, start in enumerate(range(0, len(plaintext), BLOCK)):
        stream = cipher.encrypt(prefix + (index + 1).to_bytes(size_len, "big"))
        for i in range(start, min(start + BLOCK, len(plaintext))):
            out[i] ^= stream[i - start]

    s0 = cipher.encrypt(prefix + (0).to_bytes(size_len, "big"))
    mic = bytes([mac[i] ^ s0[i] for i in range(tag_len)])
    return bytes(out), mic

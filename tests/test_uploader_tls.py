"""TLS: verification is always on. A council with its own CA is trusted only with that CA's
bundle; without it (or with another CA's) the uploader and enrollment refuse, say why, and
send nothing. The real council app under uvicorn with TLS on 127.0.0.1, certificates made
here with `cryptography`."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import random
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hub.identity import HubIdentity
from hub.store import Store
from sync.client import make_http_client, tls_context
from sync.council.app import create_app
from sync.council.store import CouncilStore
from sync.enroll import EnrollError, enroll
from sync.uploader import Outcome, Uploader, UploadSettings
from tests.council_server import _Server
from tests.factories import reading
from tests.test_uploader_council import InstantClock


@dataclass
class Pki:
    ca: Path
    cert: Path
    key: Path
    other_ca: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _ca(common: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(_name(common))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A council CA, a server certificate for 127.0.0.1 signed by it, and an unrelated CA."""
    root = tmp_path_factory.mktemp("pki")
    ca_key, ca_cert = _ca("Test council CA")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = Pki(root / "ca.pem", root / "server.pem", root / "server.key", root / "other.pem")
    paths.ca.write_bytes(_pem(ca_cert))
    paths.cert.write_bytes(_pem(cert))
    paths.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    paths.other_ca.write_bytes(_pem(_ca("Someone else's CA")[1]))
    return paths


@dataclass
class TlsCouncil:
    url: str
    store: CouncilStore


@pytest.fixture
def council(pki: Pki, tmp_path: Path) -> Iterator[TlsCouncil]:
    store = CouncilStore.open(f"sqlite:///{tmp_path / 'council.db'}")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        create_app(store),
        log_level="warning",
        lifespan="off",
        ssl_certfile=str(pki.cert),
        ssl_keyfile=str(pki.key),
    )
    server = _Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        assert server.ready.wait(20) and server.started
        yield TlsCouncil(f"https://127.0.0.1:{sock.getsockname()[1]}", store)
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()
        store.close()


def _enrolled(council: TlsCouncil, pki: Pki, tmp_path: Path) -> tuple[str, HubIdentity]:
    code = council.store.create_code(3600.0).code
    answer = enroll(council.url, code, tmp_path / "key", ca_bundle=pki.ca)
    return answer.hub_id, HubIdentity.load(tmp_path / "key")


def _upload_once(
    council: TlsCouncil, hub_id: str, identity: HubIdentity, store: Store, bundle: Path | None
) -> tuple[Outcome, str | None]:
    async def scenario() -> tuple[Outcome, str | None]:
        async with make_http_client(ca_bundle=bundle, timeout_s=10.0) as http:
            uploader = Uploader(
                store,
                identity,
                hub_id,
                UploadSettings(url=council.url, ca_bundle=bundle),
                http,
                clock=InstantClock(),
                rng=random.Random(1),
            )
            result = await uploader.upload_once()
            return result.outcome, result.error

    return asyncio.run(scenario())


def test_uploads_over_tls_only_with_the_councils_ca(
    council: TlsCouncil, pki: Pki, tmp_path: Path
) -> None:
    hub_id, identity = _enrolled(council, pki, tmp_path)
    store = Store.open(tmp_path / "hub.db")
    store.commit([reading(float(i)) for i in range(20)])
    for bundle in (None, pki.other_ca):  # the system's CAs, or another CA: refused
        outcome, error = _upload_once(council, hub_id, identity, store, bundle)
        assert outcome is Outcome.RETRY
        assert error is not None and error.startswith("TLS: the council's certificate")
        assert council.store.count_events(hub_id) == 0
    outcome, error = _upload_once(council, hub_id, identity, store, pki.ca)
    assert outcome is Outcome.SENT, error
    assert council.store.count_events(hub_id) == 20 and store.queue_depth() == 0
    store.close()


def test_enroll_over_tls_without_the_bundle_says_so_and_spends_no_code(
    council: TlsCouncil, pki: Pki, tmp_path: Path
) -> None:
    code = council.store.create_code(3600.0).code
    with pytest.raises(EnrollError, match=r"does not trust.*--ca-bundle.*not used"):
        enroll(council.url, code, tmp_path)
    assert [c.state for c in council.store.list_codes()] == ["unused"]
    answer = enroll(council.url, code, tmp_path, ca_bundle=pki.ca)
    assert council.store.get_hub(answer.hub_id) is not None


def test_an_unreadable_bundle_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ValueError, match=r"cannot use the CA bundle .*ca\.pem"):
        tls_context(junk)
    with pytest.raises(ValueError, match="cannot use the CA bundle"):
        tls_context(tmp_path / "missing.pem")
    assert tls_context(None).verify_mode.name == "CERT_REQUIRED"


def test_plain_httpx_agrees_the_bundle_is_what_makes_it_trusted(
    council: TlsCouncil, pki: Pki
) -> None:
    """A control: the server really is TLS, and the bundle really is the difference."""
    with pytest.raises(httpx.ConnectError):
        httpx.get(council.url + "/v1/health", verify=tls_context(None))
    ok = httpx.get(council.url + "/v1/health", verify=tls_context(pki.ca))
    assert ok.status_code == 200

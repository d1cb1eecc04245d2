"""The council store's access side on both engines: enrollment codes, enrollment (one code,
one hub, even under concurrency), user tokens, hub configs, and secrets stored hashed only."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

from sync.council.credentials import CROCKFORD, normalise_code
from sync.council.store import (
    Conflict,
    CouncilStore,
    EnrollmentRefused,
    Hub,
    KeyAlreadyEnrolled,
    NotFound,
    StoreError,
)
from tests.test_council_store import db_url  # noqa: F401  (fixture: SQLite file, PostgreSQL)

T = TypeVar("T")
T0 = 1_800_000_000.0  # a fixed "now", so expiry is exact


@pytest.fixture
def store(db_url: str) -> Iterator[CouncilStore]:  # noqa: F811
    s = CouncilStore.open(db_url)
    yield s
    s.close()


def key(n: int) -> bytes:
    return bytes([n]) * 32


def enroll(store: CouncilStore, code: str, n: int = 1, now: float = T0 + 1) -> Hub:
    return store.enroll_hub(code, key(n), name=f"home {n}", software_version="0.5.0", now=now)


def refusal(fn: Callable[[], Any]) -> EnrollmentRefused:
    with pytest.raises(EnrollmentRefused) as info:
        fn()
    return info.value


# -- enrollment codes ------------------------------------------------------------------------


def test_a_code_looks_right_and_enrolls_one_hub_with_the_default_config(
    store: CouncilStore,
) -> None:
    store.set_default_hub_config({"checks": {"no_motion_hours": 14}})
    new = store.create_code(3600, note="Mrs Smith, flat 2", now=T0)
    assert (new.expires_at, new.note) == (T0 + 3600, "Mrs Smith, flat 2")
    groups = new.code.split("-")
    assert [len(g) for g in groups] == [4, 4, 4] and all(c in CROCKFORD for c in "".join(groups))
    hub = enroll(store, new.code)
    assert hub.hub_id.startswith("hub-") and len(hub.hub_id) == 16
    assert set(hub.hub_id[4:]) <= set("abcdefghijklmnopqrstuvwxyz234567")
    assert (hub.name, hub.software_version, hub.enrolled_at) == ("home 1", "0.5.0", T0 + 1)
    assert (hub.config, hub.config_version) == ({"checks": {"no_motion_hours": 14}}, 1)
    assert store.get_hub(hub.hub_id) == hub
    (info,) = store.list_codes(now=T0 + 2)
    assert (info.id, info.state, info.hub_id, info.note) == (new.id, "used", hub.hub_id, new.note)
    assert info.created_at == T0


def test_a_code_works_once(store: CouncilStore) -> None:
    code = store.create_code(3600, now=T0).code
    enroll(store, code, 1)
    refused = refusal(lambda: enroll(store, code, 2, now=T0 + 5))
    assert refused.reason == "used" and "already used at 2027-01-15T08:00:01Z" in refused.detail
    assert len(store.fleet()) == 1


def test_a_lost_enroll_answer_is_asked_again_with_the_same_key(store: CouncilStore) -> None:
    """The installer re-runs `hearth enroll` with the same code and key: the same hub, with
    its current config, not "used"; another key stays refused, and so does the same key
    once the code has expired."""
    code = store.create_code(3600, now=T0).code
    first = enroll(store, code, 1)
    store.set_hub_config(first.hub_id, {"checks": {"no_motion_hours": 9}})
    again = enroll(store, code, 1, now=T0 + 60)
    assert again.hub_id == first.hub_id and again.enrolled_at == first.enrolled_at
    assert (again.config, again.config_version) == ({"checks": {"no_motion_hours": 9}}, 2)
    assert store.get_hub(first.hub_id) == again
    assert refusal(lambda: enroll(store, code, 2, now=T0 + 61)).reason == "used"
    assert refusal(lambda: enroll(store, code, 1, now=T0 + 3600)).reason == "used"
    assert len(store.fleet()) == 1
    (info,) = store.list_codes(now=T0 + 2)
    assert (info.state, info.hub_id) == ("used", first.hub_id)


def test_concurrent_repeats_of_one_enrollment_answer_one_hub(store: CouncilStore) -> None:
    code = store.create_code(3600, now=T0).code
    results = _race(4, lambda _i: enroll(store, code, 5))
    assert all(isinstance(r, Hub) for r in results), results
    assert len({r.hub_id for r in results if isinstance(r, Hub)}) == 1
    assert len(store.fleet()) == 1


def test_typed_codes_are_normalised(store: CouncilStore) -> None:
    code = store.create_code(3600, now=T0).code
    sloppy = code.lower().replace("-", " ").replace("0", "o").replace("1", "l")
    assert normalise_code(sloppy) == code.replace("-", "")
    assert enroll(store, f"  {sloppy} ").hub_id.startswith("hub-")


def test_expired_revoked_and_unknown_codes_are_refused_saying_which(store: CouncilStore) -> None:
    expiring = store.create_code(60, now=T0)
    just_in_time = store.create_code(60, now=T0)
    assert enroll(store, just_in_time.code, 1, now=T0 + 59.999).config_version == 1
    refused = refusal(lambda: enroll(store, expiring.code, 2, now=T0 + 60))
    assert refused.reason == "expired"
    assert str(refused) == "enrollment code expired at 2027-01-15T08:01:00Z"

    revoked = store.create_code(3600, now=T0)
    store.revoke_code(revoked.id, now=T0 + 10)
    store.revoke_code(revoked.id, now=T0 + 20)  # twice is fine, the first time stays
    refused = refusal(lambda: enroll(store, revoked.code, 3))
    assert refused.reason == "revoked" and "revoked at 2027-01-15T08:00:10Z" in refused.detail

    other = "".join("0" if c != "-" else c for c in revoked.code)
    for wrong in (other, "not a code", "", "ABCD-EFGH-JKMN-P", "UUUU-UUUU-UUUU"):
        assert refusal(lambda w=wrong: enroll(store, w, 4)).reason == "unknown"  # type: ignore[misc]
    assert len(store.fleet()) == 1


def test_list_codes_shows_each_state(store: CouncilStore) -> None:
    unused = store.create_code(3600, now=T0)
    used = store.create_code(3600, now=T0)
    expired = store.create_code(60, now=T0)
    revoked = store.create_code(3600, now=T0)
    hub = enroll(store, used.code)
    store.revoke_code(revoked.id, now=T0 + 1)
    states = {c.id: (c.state, c.hub_id) for c in store.list_codes(now=T0 + 100)}
    assert states == {
        unused.id: ("unused", None),
        used.id: ("used", hub.hub_id),
        expired.id: ("expired", None),
        revoked.id: ("revoked", None),
    }
    assert [c.state for c in store.list_codes(now=T0)] == ["unused", "used", "unused", "revoked"]


def test_revoking_a_used_or_unknown_code_is_refused(store: CouncilStore) -> None:
    used = store.create_code(3600, now=T0)
    hub = enroll(store, used.code)
    with pytest.raises(Conflict, match=f"already used .*{hub.hub_id}"):
        store.revoke_code(used.id)
    with pytest.raises(NotFound):
        store.revoke_code(used.id + 1000)
    assert store.list_codes()[0].state == "used"
    assert store.get_hub(hub.hub_id) is not None


def test_bad_inputs_are_refused_without_spending_the_code(store: CouncilStore) -> None:
    code = store.create_code(3600, now=T0).code
    for bad_key in (b"short", key(1) + b"x"):
        with pytest.raises(StoreError, match="public_key"):
            store.enroll_hub(code, bad_key, None, None, now=T0 + 1)
    with pytest.raises(StoreError):
        store.enroll_hub(code, key(1), "n" * 201, None, now=T0 + 1)
    with pytest.raises(StoreError):
        store.enroll_hub(code, key(1), None, "v" * 65, now=T0 + 1)
    for expires in (0, -5, float("nan"), float("inf")):
        with pytest.raises(StoreError):
            store.create_code(expires)
    with pytest.raises(StoreError):
        store.create_code(60, note="n" * 201)
    assert [c.state for c in store.list_codes(now=T0 + 1)] == ["unused"]
    assert enroll(store, code).hub_id  # still good


def test_one_key_enrolls_one_hub_and_a_refused_key_gives_the_code_back(
    store: CouncilStore,
) -> None:
    first, second = store.create_code(3600, now=T0), store.create_code(3600, now=T0)
    hub = enroll(store, first.code, 7)
    with pytest.raises(KeyAlreadyEnrolled):
        enroll(store, second.code, 7)
    assert [c.state for c in store.list_codes(now=T0 + 2)] == ["used", "unused"]
    assert enroll(store, second.code, 8).hub_id != hub.hub_id


def _race(workers: int, fn: Callable[[int], T]) -> list[T | BaseException]:
    """Run fn(0..workers-1) in threads released together; each result or exception."""
    results: list[T | BaseException] = [RuntimeError("did not run")] * workers
    barrier = threading.Barrier(workers)

    def run(i: int) -> None:
        barrier.wait(timeout=30)
        try:
            results[i] = fn(i)
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    return results


def test_concurrent_redemptions_of_one_code_enroll_exactly_one_hub(store: CouncilStore) -> None:
    for round_ in range(4):
        code = store.create_code(3600, now=T0).code
        results = _race(6, lambda i, c=code, r=round_: enroll(store, c, 10 * r + i))  # type: ignore[misc]
        winners = [r for r in results if isinstance(r, Hub)]
        losers = [r for r in results if not isinstance(r, Hub)]
        assert len(winners) == 1, results
        assert all(isinstance(r, EnrollmentRefused) and r.reason == "used" for r in losers), losers
        assert store.list_codes()[-1].hub_id == winners[0].hub_id
    assert len(store.fleet()) == 4


def test_concurrent_enrollments_of_one_key_make_one_hub(store: CouncilStore) -> None:
    codes = [store.create_code(3600, now=T0).code for _ in range(5)]
    results = _race(5, lambda i: enroll(store, codes[i], 42))
    winners = [r for r in results if isinstance(r, Hub)]
    assert len(winners) == 1, results
    assert all(isinstance(r, KeyAlreadyEnrolled) for r in results if r not in winners), results
    assert sorted(c.state for c in store.list_codes(now=T0 + 2)) == ["unused"] * 4 + ["used"]


# -- tokens ----------------------------------------------------------------------------------


def test_tokens_authenticate_until_revoked(store: CouncilStore) -> None:
    reader = store.create_token("reader", "analyst", now=T0)
    admin = store.create_token("admin", "ops", now=T0)
    assert reader.token.startswith("hrt_") and len(reader.token) == 4 + 43
    assert (reader.role, reader.name, admin.role) == ("reader", "analyst", "admin")
    who = store.authenticate(reader.token, now=T0 + 1)
    assert who is not None and (who.id, who.role, who.name) == (reader.id, "reader", "analyst")
    assert store.authenticate(reader.token + "x") is None
    assert store.authenticate(reader.token[:-1]) is None
    assert store.authenticate("") is None
    assert store.authenticate("hrt_" + "A" * 10_000) is None
    store.revoke_token(reader.id, now=T0 + 5)
    store.revoke_token(reader.id, now=T0 + 9)  # twice is fine, the first time stays
    assert store.authenticate(reader.token, now=T0 + 6) is None
    assert store.authenticate(admin.token, now=T0 + 6) is not None
    listed = {t.id: t for t in store.list_tokens()}
    assert listed[reader.id].revoked_at == T0 + 5 and listed[admin.id].revoked_at is None
    with pytest.raises(NotFound):
        store.revoke_token(admin.id + 1000)


def test_token_last_use_is_written_at_most_once_a_minute(store: CouncilStore) -> None:
    token = store.create_token("reader", "analyst", now=T0)

    def last_used() -> float | None:
        return store.list_tokens()[0].last_used_at

    assert last_used() is None
    seen = store.authenticate(token.token, now=T0 + 100)
    assert seen is not None and seen.last_used_at == T0 + 100 == last_used()
    seen = store.authenticate(token.token, now=T0 + 159)
    assert seen is not None and seen.last_used_at == T0 + 100 == last_used()  # no write
    assert store.authenticate(token.token, now=T0 + 160) is not None
    assert last_used() == T0 + 160


def test_token_roles_and_names_are_checked(store: CouncilStore) -> None:
    for role, name in (("root", "x"), ("Admin", "x"), ("reader", ""), ("reader", "n" * 201)):
        with pytest.raises(StoreError):
            store.create_token(role, name)
    assert store.list_tokens() == []


# -- configs ---------------------------------------------------------------------------------


def test_hub_config_versions_and_the_default_config(store: CouncilStore) -> None:
    assert store.default_hub_config() == {}
    store.add_hub("hub-old", key(1))
    store.set_default_hub_config({"checks": {"a": 1}})
    store.set_default_hub_config({"checks": {"a": 2}, "sync": {"interval_s": 60}})
    assert store.default_hub_config() == {"checks": {"a": 2}, "sync": {"interval_s": 60}}
    hub = enroll(store, store.create_code(60, now=T0).code, 2)
    assert (hub.config["checks"], hub.config_version) == ({"a": 2}, 1)
    old = store.get_hub("hub-old")
    assert old is not None and (old.config, old.config_version) == ({}, 1)  # kept its own

    updated = store.set_hub_config(hub.hub_id, {"checks": {"a": 3}})
    assert (updated.config, updated.config_version) == ({"checks": {"a": 3}}, 2)
    assert store.set_hub_config(hub.hub_id, {}).config_version == 3
    assert store.get_hub(hub.hub_id) == Hub(
        **{**_fields(updated), "config": {}, "config_version": 3}
    )
    assert store.fleet_entry(hub.hub_id) is not None
    assert store.fleet_entry(hub.hub_id).config_version == 3  # type: ignore[union-attr]
    with pytest.raises(NotFound):
        store.set_hub_config("hub-nope", {})
    for bad in ({"x": float("nan")}, {"x": object()}, ["not", "a", "dict"]):
        with pytest.raises(StoreError):
            store.set_hub_config(hub.hub_id, bad)  # type: ignore[arg-type]
        with pytest.raises(StoreError):
            store.set_default_hub_config(bad)  # type: ignore[arg-type]
    assert store.get_hub(hub.hub_id).config_version == 3  # type: ignore[union-attr]


def _fields(hub: Hub) -> dict[str, Any]:
    return {name: getattr(hub, name) for name in Hub.__dataclass_fields__}


# -- secrets at rest -------------------------------------------------------------------------


def test_secrets_are_stored_only_as_digests(store: CouncilStore, db_url: str) -> None:  # noqa: F811
    code = store.create_code(3600, now=T0)
    unused = store.create_code(3600, now=T0)
    token = store.create_token("admin", "ops", now=T0)
    enroll(store, code.code)
    store.authenticate(token.token, now=T0 + 1)
    secrets = [code.code, unused.code, token.token]
    secrets += [s.replace("-", "") for s in secrets] + [token.token[4:]]
    digests = [
        hashlib.sha256(code.code.replace("-", "").encode()).hexdigest(),
        hashlib.sha256(token.token.encode()).hexdigest(),
    ]
    if db_url.startswith("sqlite"):
        store.close()  # checkpoints the WAL into the file; the -wal is read too when left
        db_file = Path(sa.make_url(db_url).database or "")
        stored = b"".join(p.read_bytes() for p in db_file.parent.glob(db_file.name + "*"))
    else:
        with store.engine.connect() as conn:
            tables = sa.inspect(conn).get_table_names()
            dump = [conn.exec_driver_sql(f'SELECT * FROM "{t}"').all() for t in tables]
        stored = repr(dump).encode()
    assert all(d.encode() in stored for d in digests)  # looking in the right place
    for secret in secrets:
        assert secret.encode() not in stored

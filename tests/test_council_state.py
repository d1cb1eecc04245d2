"""The council state kept in the data directory and laid over the installer's config file."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from hub.config import HubConfig, load_config, starter_config, with_council_config, write_config
from hub.council_state import (
    council_state_path,
    read_council_state,
    save_council_state,
    with_council_state,
)

HUB_ID = "hub-abcdefghijkl"
COLD = {"checks": {"cold_home": {"warning_below_c": 17.0}}}


def _installed(tmp_path: Path, *, hub_id: str | None = HUB_ID, version: int = 1) -> Path:
    config = starter_config("Flat 3", tmp_path / "data", simulated=True)
    if hub_id is not None:
        config = config.model_copy(
            update={
                "hub": config.hub.model_copy(update={"id": hub_id}),
                "council": config.council.model_copy(
                    update={"url": "https://council.example", "config_version": version}
                ),
            }
        )
    (tmp_path / "data").mkdir()
    path = tmp_path / "hub.toml"
    write_config(path, config)
    return path


def _pushed(path: Path, sections: dict[str, object], version: int) -> HubConfig:
    return with_council_config(load_config(path), sections, version)


def test_a_pushed_config_applies_from_the_data_dir_and_leaves_the_file_alone(
    tmp_path: Path,
) -> None:
    path = _installed(tmp_path)
    before = path.read_bytes()
    save_council_state(_pushed(path, COLD, 2))
    assert path.read_bytes() == before
    config = load_config(path)
    assert config.checks.cold_home.warning_below_c == 17.0
    assert config.council.config_version == 2
    assert config.hub.id == HUB_ID and len(config.sensors) == 10


def test_the_files_own_newer_version_wins_over_an_older_state(tmp_path: Path) -> None:
    path = _installed(tmp_path, version=1)
    save_council_state(_pushed(path, COLD, 2))
    # The installer enrolled again by hand since (same hub), getting version 5 into the file.
    config = load_config(path)
    fresh = with_council_config(config, {"checks": {}}, 5)
    write_config(path, fresh)
    again = load_config(path)
    assert again.council.config_version == 5
    assert again.checks.cold_home.warning_below_c == 18.0


def test_a_state_recorded_for_another_hub_is_ignored(tmp_path: Path) -> None:
    path = _installed(tmp_path)
    save_council_state(_pushed(path, COLD, 2))
    record = json.loads(council_state_path(tmp_path / "data").read_text())
    record["hub_id"] = "hub-zzzzzzzzzzzz"
    council_state_path(tmp_path / "data").write_text(json.dumps(record))
    config = load_config(path)
    assert config.checks.cold_home.warning_below_c == 18.0
    assert config.council.config_version == 1


def test_an_enrollment_finished_by_the_service_gives_the_file_its_hub_id(
    tmp_path: Path,
) -> None:
    path = _installed(tmp_path, hub_id=None)
    base = load_config(path)
    assert base.hub.id is None
    enrolled = base.model_copy(
        update={
            "hub": base.hub.model_copy(update={"id": HUB_ID}),
            "council": base.council.model_copy(update={"url": "https://council.example"}),
        }
    )
    save_council_state(with_council_config(enrolled, COLD, 1))
    config = load_config(path)
    assert config.hub.id == HUB_ID
    assert config.council.url == "https://council.example"
    assert config.checks.cold_home.warning_below_c == 17.0


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "cannot read the council state"),
        ('{"hub_id": 3, "config_version": 2, "sections": {}}', "wrong type"),
        ("[]", "not a council state record"),
    ],
)
def test_a_damaged_state_is_named_and_the_file_used_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: str, problem: str
) -> None:
    path = _installed(tmp_path)
    council_state_path(tmp_path / "data").write_text(content)
    with pytest.raises(ValueError, match=problem):
        read_council_state(tmp_path / "data")
    with caplog.at_level(logging.WARNING):
        config = load_config(path)
    assert config.council.config_version == 1
    assert problem in caplog.text and str(council_state_path(tmp_path / "data")) in caplog.text


def test_a_state_the_hubs_rules_now_refuse_is_skipped_but_the_enrollment_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _installed(tmp_path, hub_id=None)
    state = {
        "hub_id": HUB_ID,
        "council_url": "https://council.example",
        "config_version": 4,
        # Valid once, perhaps; refused by today's rules: urgent must be below warning.
        "sections": {"checks": {"cold_home": {"warning_below_c": 15.0}}},
    }
    council_state_path(tmp_path / "data").write_text(json.dumps(state))
    with caplog.at_level(logging.WARNING):
        config = load_config(path)
    assert config.hub.id == HUB_ID and config.council.config_version == 0
    assert "urgent_below_c" in caplog.text


def test_a_forged_address_in_the_state_is_refused_by_the_config_rules(tmp_path: Path) -> None:
    path = _installed(tmp_path, hub_id=None)
    state = {"hub_id": HUB_ID, "council_url": "http://council.example", "config_version": 0}
    council_state_path(tmp_path / "data").write_text(json.dumps(state | {"sections": {}}))
    config = load_config(path)
    assert config.hub.id is None  # plain http off loopback is never accepted


def test_with_council_state_without_a_state_file_is_the_config_itself(tmp_path: Path) -> None:
    config = load_config(_installed(tmp_path))
    assert with_council_state(config) is config

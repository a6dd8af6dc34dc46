"""REDIS_MODE and the sentinel settings: what they accept, and the one-line refusals at start-up."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sessions_config.settings import Settings
from tests.cli_runner import assert_usage_error, run_cli

SENTINEL = {"redis_mode": "sentinel", "redis_sentinel_service": "sessions"}


def refused(**values: object) -> set[str]:
    """The settings named by the validation error of these values."""
    with pytest.raises(ValidationError) as raised:
        Settings(**values)  # type: ignore[arg-type]
    return {str(error["loc"][0]) for error in raised.value.errors()}


def test_standalone_is_the_default_and_waits_for_no_replica() -> None:
    settings = Settings()
    assert settings.redis_mode == "standalone"
    assert settings.redis_sentinels == []
    assert settings.wait_replicas == 0


def test_sentinels_are_host_port_pairs() -> None:
    settings = Settings(**SENTINEL, redis_sentinels=" 10.0.0.1:26379, [::1]:26380,sentinel-3:1 ")  # type: ignore[arg-type]
    assert settings.redis_sentinels == [("10.0.0.1", 26379), ("::1", 26380), ("sentinel-3", 1)]
    assert settings.wait_replicas == 1
    assert Settings(**SENTINEL, redis_sentinels="a:1", redis_wait_replicas=0).wait_replicas == 0  # type: ignore[arg-type]


@pytest.mark.parametrize("sentinels", ["a", "a:", ":1", "a:x", "a:70000", "a:1,b"])
def test_a_sentinel_that_is_not_host_port_is_refused(sentinels: str) -> None:
    assert refused(**SENTINEL, redis_sentinels=sentinels) == {"redis_sentinels"}


def test_sentinel_mode_needs_sentinels_a_service_and_a_redis_url() -> None:
    assert refused(redis_mode="sentinel") == {"redis_sentinels", "redis_sentinel_service"}
    assert refused(redis_mode="sentinel", redis_sentinels="a:1") == {"redis_sentinel_service"}
    assert refused(**SENTINEL, redis_sentinels="a:1", redis_url="rediss://h/0") == {"redis_url"}
    # Only sentinel mode asks for them.
    assert Settings(redis_url="rediss://h/0").redis_sentinels == []


def test_a_cluster_waits_for_no_replica() -> None:
    # WAIT answers for the one node it is sent to; a cluster's ends span nodes.
    assert Settings(redis_mode="cluster").wait_replicas == 0
    assert refused(redis_mode="cluster", redis_wait_replicas=1) == {"redis_wait_replicas"}


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"REDIS_MODE": "sentinel"}, "REDIS_SENTINEL"),
        ({"REDIS_MODE": "sentinel", "REDIS_SENTINEL_SERVICE": "s"}, "REDIS_SENTINELS"),
        ({"REDIS_MODE": "cluster", "REDIS_WAIT_REPLICAS": "1"}, "REDIS_WAIT_REPLICAS"),
        ({"REDIS_MODE": "replicated"}, "REDIS_MODE"),
    ],
)
async def test_the_command_names_a_bad_redis_mode_in_one_line(
    base_settings: Settings, env: dict[str, str], named: str
) -> None:
    result = await run_cli(base_settings, "check", **env)
    assert_usage_error(result, "bad configuration", named)

"""Tier policy driven by the labelled fake resource feed (tests/fakes/resources.py): memory pressure moves
new requests down at once, recovery brings them back only after the hysteresis margin has held, and free
memory hovering around a threshold does not flap."""

from __future__ import annotations

from typing import Any

import pytest

from fakes.resources import FakeResourceFeed, GiB
from mindgate.models._decisions import DecisionLog
from mindgate.routing._tiers import Tier, TierPolicy

BIG, MEDIUM, SMALL = "big-model", "medium-model", "small-model"


def policy(feed: FakeResourceFeed, held: dict[str, int] | None = None, **kwargs: Any) -> TierPolicy:
    tiers = [Tier("big", BIG, 8 * GiB), Tier("medium", MEDIUM, 4 * GiB), Tier("small", SMALL, None)]
    return TierPolicy("sized", tiers, feed, held_bytes=lambda model: (held or {}).get(model, 0),
                      hysteresis=0.15, recover_after=30.0, decisions=DecisionLog(), **kwargs)


def test_pressure_moves_down_at_once_and_recovery_waits_for_the_margin_to_hold() -> None:
    feed = FakeResourceFeed(16 * GiB)
    tiers = policy(feed)
    assert tiers.current == 0
    feed.push(5 * GiB)
    assert tiers.current == 1  # below big's 8 GiB: down at the first reading
    [down] = tiers.decisions.recent()
    assert (down.action, down.target) == ("tier-down", "medium")
    assert "big needs 8.0 GiB free, 5.0 GiB is" in down.reason
    feed.push(2 * GiB)
    assert tiers.current == 2
    feed.push(9 * GiB, advance=60)  # recovery starts: nothing changes until the margin has held 30 s
    assert tiers.current == 2
    feed.push(9 * GiB, advance=60)  # above 8 GiB but inside big's 15% margin (9.2 GiB): medium, not big
    assert tiers.current == 1
    for _ in range(3):
        feed.push(9 * GiB, advance=60)
    assert tiers.current == 1
    feed.push(10 * GiB, advance=10)
    feed.push(10 * GiB, advance=10)
    assert tiers.current == 1  # 10 s of margin so far; 30 s needed
    feed.push(10 * GiB, advance=20)
    assert tiers.current == 0
    assert [d.action for d in tiers.decisions.recent()] == ["tier-up", "tier-up", "tier-down", "tier-down"]


def test_a_dip_during_recovery_restarts_the_wait() -> None:
    feed = FakeResourceFeed(5 * GiB)
    tiers = policy(feed)
    assert tiers.current == 1
    feed.push(10 * GiB, advance=20)
    feed.push(8.5 * GiB, advance=5)  # still above the minimum (no move down), but under the margin
    feed.push(10 * GiB, advance=20)
    assert tiers.current == 1
    feed.push(10 * GiB, advance=30)
    assert tiers.current == 0


@pytest.mark.parametrize("around", [8 * GiB, 4 * GiB])
def test_free_memory_hovering_around_a_threshold_does_not_flap(around: int) -> None:
    feed = FakeResourceFeed(around + 512 * 2**20)
    tiers = policy(feed)
    start = tiers.current
    for i in range(200):
        feed.push(around + (-1 if i % 2 else 1) * 256 * 2**20, advance=1)
    changes = tiers.decisions.recent()
    assert len(changes) == 1 and changes[0].action == "tier-down" and tiers.current == start + 1


def test_a_loaded_model_counts_its_own_memory_as_free_to_itself() -> None:
    """Loaded models never count twice: the 6 GiB the big model holds is what the reading lacks."""
    feed = FakeResourceFeed(16 * GiB)
    tiers = policy(feed, held={BIG: 6 * GiB})
    feed.push(3 * GiB)  # 3 GiB free + the 6 GiB it holds = 9 GiB >= 8 GiB: stays
    assert tiers.current == 0 and tiers.decisions.recent() == []
    feed.push(1 * GiB)  # 7 GiB < 8 GiB: down (to small: medium's model is not loaded, 1 GiB < 4 GiB)
    assert tiers.current == 2


def test_status_and_unsubscribe() -> None:
    feed = FakeResourceFeed(5 * GiB)
    tiers = policy(feed)
    status = tiers.status()
    assert status["current"] == "medium" and status["tiers"][0] == {"name": "big", "min_free_bytes": 8 * GiB}
    assert "tier 2 of 3" in status["reason"]
    tiers.close()
    feed.push(1 * GiB)
    assert tiers.current == 1  # no longer listening


def test_server_tiers_count_free_vram_too() -> None:
    """A tier served by a GPU-offloading server (LM Studio, Ollama) counts free VRAM with RAM."""
    feed = FakeResourceFeed(2 * GiB, vram_free_bytes=7 * GiB)
    plain = policy(feed)
    gpu = policy(feed, uses_gpu=lambda model: model == BIG)
    assert plain.current == 2 and gpu.current == 0  # 2 GiB RAM + 7 GiB VRAM >= 8 GiB for big
    feed.push(2 * GiB, vram_free_bytes=5 * GiB)
    assert gpu.current == 2

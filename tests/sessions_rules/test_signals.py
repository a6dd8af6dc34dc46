"""Location signals (sessions_rules/signals.py, docs/SIGNALS.md): pure tests, no services.
signals_for is checked against the one-session-at-a-time reference (tests/signals_reference.py).

Run alone with `pytest --noconftest tests/sessions_rules/test_signals.py`.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from sessions_geo.model import GeoInfo
from sessions_rules.signals import (
    EARTH_RADIUS_KM,
    MAX_KMH,
    Located,
    haversine_km,
    signals_for,
)
from tests.signals_reference import impossible_travel, is_new_location, same_place

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

BERLIN = GeoInfo(city="Berlin", country_code="DE", lat=52.52, lon=13.405, org="Telekom")
PARIS = GeoInfo(city="Paris", country_code="FR", lat=48.8566, lon=2.3522, org="Orange")
NEW_YORK = GeoInfo(city="New York", country_code="US", lat=40.7128, lon=-74.0060, org="Verizon")
LONDON = GeoInfo(city="London", country_code="GB", lat=51.5074, lon=-0.1278, org="BT")


def at(id_: str, minutes: float, geo: GeoInfo | None) -> Located:
    return Located(id=id_, created_at=T0 + timedelta(minutes=minutes), geo=geo)


def both(session: Located, timeline: list[Located]) -> tuple[bool, bool]:
    """The two signals per session, checked against signals_for on the same input."""
    one = (is_new_location(session, timeline), impossible_travel(session, timeline))
    assert signals_for([session], timeline) == {session.id: one}
    return one


# --- constants and distance -----------------------------------------------------------------------


def test_constants() -> None:
    assert MAX_KMH == 900.0
    assert EARTH_RADIUS_KM == 6371.0088


def test_berlin_paris_distance_is_about_878_km() -> None:
    assert 877.0 < haversine_km(52.52, 13.405, 48.8566, 2.3522) < 878.0
    assert haversine_km(48.8566, 2.3522, 52.52, 13.405) == haversine_km(
        52.52, 13.405, 48.8566, 2.3522
    )


# --- impossibleTravel -----------------------------------------------------------------------------


def test_berlin_then_paris_one_hour_later_is_possible() -> None:
    # ~877 km in 1 h: 877 km/h, not above 900.
    berlin, paris = at("a", 0, BERLIN), at("b", 60, PARIS)
    assert impossible_travel(paris, [berlin, paris]) is False
    assert both(paris, [berlin, paris])[1] is False


def test_berlin_then_paris_fifty_minutes_later_is_impossible() -> None:
    # ~877 km in 50 min: ~1053 km/h.
    berlin, paris = at("a", 0, BERLIN), at("b", 50, PARIS)
    assert impossible_travel(paris, [berlin, paris]) is True
    assert both(paris, [berlin, paris])[1] is True


def test_threshold_is_strictly_above_max_kmh() -> None:
    berlin, paris = at("a", 0, BERLIN), at("b", 60, PARIS)
    kmh = haversine_km(52.52, 13.405, 48.8566, 2.3522)  # over exactly 1 h
    assert impossible_travel(paris, [berlin], max_kmh=kmh) is False
    assert impossible_travel(paris, [berlin], max_kmh=kmh - 0.001) is True
    assert signals_for([paris], [berlin], max_kmh=kmh - 0.001) == {"b": (True, True)}


def test_new_york_then_london_two_hours_later_is_impossible() -> None:
    ny, london = at("a", 0, NEW_YORK), at("b", 120, LONDON)
    assert both(london, [ny, london]) == (True, True)


def test_same_coordinates_same_second_is_possible() -> None:
    first, second = at("a", 0, BERLIN), at("b", 0, BERLIN)
    assert impossible_travel(second, [first, second]) is False
    assert impossible_travel(first, [first, second]) is False


def test_any_move_in_the_same_instant_is_impossible() -> None:
    moved = GeoInfo(city="Berlin", country_code="DE", lat=52.5201, lon=13.405, org="Telekom")
    first, second = at("a", 0, BERLIN), at("b", 0, moved)
    assert impossible_travel(second, [first, second]) is True
    assert impossible_travel(first, [first, second]) is False  # "a" < "b": a has no previous


def test_missing_coordinates_are_never_impossible() -> None:
    no_coords = GeoInfo(city="Paris", country_code="FR", org="Orange")
    half = GeoInfo(city="Paris", country_code="FR", lat=48.8566, org="Orange")
    for geo in (no_coords, half, None):
        assert impossible_travel(at("b", 1, geo), [at("a", 0, BERLIN)]) is False
        assert impossible_travel(at("b", 1, PARIS), [at("a", 0, geo)]) is False


def test_no_previous_session_is_never_impossible() -> None:
    paris = at("b", 0, PARIS)
    assert impossible_travel(paris, []) is False
    assert impossible_travel(paris, [paris]) is False
    assert impossible_travel(paris, [paris, at("c", 1, NEW_YORK)]) is False  # only later ones


def test_only_the_immediately_previous_session_counts() -> None:
    # Berlin, then a session without coordinates, then Paris 1 minute later: the previous one
    # has no coordinates, so no comparison with Berlin is made.
    timeline = [at("a", 0, BERLIN), at("b", 1, None), at("c", 2, PARIS)]
    assert impossible_travel(timeline[2], timeline) is False
    # Without the middle one, Berlin is the previous session and the jump is impossible.
    assert impossible_travel(timeline[2], [timeline[0]]) is True


def test_later_sessions_do_not_count() -> None:
    paris = at("b", 0, PARIS)
    assert impossible_travel(paris, [at("a", 1, BERLIN)]) is False


# --- isNewLocation --------------------------------------------------------------------------------


def test_first_session_ever_is_new_when_located() -> None:
    assert both(at("a", 0, BERLIN), [at("a", 0, BERLIN)]) == (True, False)
    assert both(at("a", 0, BERLIN), []) == (True, False)


def test_first_session_ever_is_not_new_when_location_unknown() -> None:
    assert both(at("a", 0, None), []) == (False, False)
    no_country = GeoInfo(city="Berlin", org="Telekom", lat=52.52, lon=13.405)
    assert both(at("a", 0, no_country), []) == (False, False)
    assert both(at("a", 0, GeoInfo()), []) == (False, False)


def test_same_country_and_city_is_not_new() -> None:
    other_network = GeoInfo(city="berlin", country_code="DE", org="Vodafone")
    assert both(at("b", 5, other_network), [at("a", 0, BERLIN)])[0] is False


def test_same_country_other_city_is_new() -> None:
    munich = GeoInfo(city="Munich", country_code="DE", org="Telekom")  # same network, too
    assert both(at("b", 5, munich), [at("a", 0, BERLIN)])[0] is True


def test_same_city_other_country_is_new() -> None:
    paris_texas = GeoInfo(city="Paris", country_code="US", org="Orange")
    assert both(at("b", 5, paris_texas), [at("a", 0, PARIS)])[0] is True


def test_city_unknown_on_one_side_and_same_org_is_not_new() -> None:
    no_city = GeoInfo(country_code="DE", org="TELEKOM")
    # The earlier one has no city...
    assert both(at("b", 5, BERLIN), [at("a", 0, no_city)])[0] is False
    # ...or the later one has none.
    assert both(at("b", 5, no_city), [at("a", 0, BERLIN)])[0] is False


def test_city_unknown_on_one_side_and_other_org_is_new() -> None:
    no_city = GeoInfo(country_code="DE", org="Vodafone")
    assert both(at("b", 5, BERLIN), [at("a", 0, no_city)])[0] is True
    assert both(at("b", 5, no_city), [at("a", 0, BERLIN)])[0] is True


def test_no_cities_same_country_other_org_is_new() -> None:
    earlier = GeoInfo(country_code="DE", org="Telekom")
    later = GeoInfo(country_code="DE", org="Vodafone")
    assert both(at("b", 5, later), [at("a", 0, earlier)])[0] is True


def test_no_cities_same_country_same_org_is_not_new() -> None:
    earlier = GeoInfo(country_code="DE", org="Telekom")
    later = GeoInfo(country_code="DE", org="telekom")
    assert both(at("b", 5, later), [at("a", 0, earlier)])[0] is False


def test_no_city_and_no_org_is_new_even_in_the_same_country() -> None:
    earlier = GeoInfo(country_code="DE")
    later = GeoInfo(country_code="DE")
    assert both(at("b", 5, later), [at("a", 0, earlier)])[0] is True


def test_unknown_earlier_sessions_never_match() -> None:
    timeline = [at("a", 0, None), at("b", 1, GeoInfo(city="Berlin", org="Telekom"))]
    assert both(at("c", 2, BERLIN), timeline)[0] is True


def test_a_later_session_in_the_same_place_does_not_count() -> None:
    assert both(at("a", 0, BERLIN), [at("b", 5, BERLIN)])[0] is True


def test_same_place_rules() -> None:
    assert same_place(BERLIN, GeoInfo(city="BERLIN", country_code="DE"))
    assert not same_place(BERLIN, GeoInfo(city="Berlin", country_code="de"))  # exact country
    assert not same_place(BERLIN, GeoInfo(city="Munich", country_code="DE", org="Telekom"))
    assert same_place(BERLIN, GeoInfo(country_code="DE", org="telekom"))
    assert not same_place(BERLIN, GeoInfo(country_code="DE"))
    assert not same_place(GeoInfo(org="x"), GeoInfo(org="x"))
    assert not same_place(GeoInfo(city="Berlin", org="x"), GeoInfo(city="Berlin", org="x"))
    # Empty strings are unknown, not a value.
    assert not same_place(GeoInfo(country_code="DE", org=""), GeoInfo(country_code="DE", org=""))
    assert same_place(
        GeoInfo(country_code="DE", city="", org="T"), GeoInfo(country_code="DE", city="X", org="t")
    )
    assert not same_place(GeoInfo(country_code="", org="T"), GeoInfo(country_code="", org="T"))


# --- order: ties, input order, the session itself -------------------------------------------------


def test_ties_in_created_at_are_broken_by_id() -> None:
    a, b = at("a", 0, BERLIN), at("b", 0, BERLIN)
    timeline = [b, a]
    # "a" is earlier than "b": b is not new, a is.
    assert is_new_location(a, timeline) is True
    assert is_new_location(b, timeline) is False
    assert signals_for(timeline, timeline) == {"a": (True, False), "b": (False, False)}

    # For impossible travel, the previous of "b" is "a" (same instant), and "a" has none.
    c = at("c", 0, PARIS)
    timeline = [c, b, a]
    assert impossible_travel(c, timeline) is True  # previous is "b", in Berlin, same instant
    assert impossible_travel(b, timeline) is False  # previous is "a", same coordinates
    assert impossible_travel(a, timeline) is False


def test_the_session_is_never_compared_with_itself() -> None:
    berlin = at("a", 0, BERLIN)
    assert is_new_location(berlin, [berlin]) is True
    # Even a stale copy of itself, with an earlier time, is ignored.
    stale = at("a", -60, BERLIN)
    assert is_new_location(berlin, [stale]) is True
    assert impossible_travel(at("a", 0, PARIS), [stale]) is False
    assert signals_for([berlin], [stale, berlin]) == {"a": (True, False)}


def test_the_order_of_the_timeline_does_not_matter() -> None:
    timeline = [
        at("a", 0, BERLIN),
        at("b", 30, PARIS),
        at("c", 30, BERLIN),
        at("d", 600, NEW_YORK),
        at("e", 700, LONDON),
        at("f", 800, None),
        at("g", 900, GeoInfo(country_code="GB", org="bt")),
    ]
    expected = signals_for(timeline, timeline)
    rng = random.Random(7)
    for _ in range(20):
        shuffled = timeline[:]
        rng.shuffle(shuffled)
        assert signals_for(shuffled, shuffled) == expected
        for session in timeline:
            assert (
                is_new_location(session, shuffled),
                impossible_travel(session, shuffled),
            ) == expected[session.id]
    assert expected == {
        "a": (True, False),
        "b": (True, True),  # ~877 km in 30 min
        "c": (False, True),  # back from Paris, same instant as "b"
        "d": (True, False),  # Berlin -> New York (~6,385 km) in 9.5 h: ~672 km/h
        "e": (True, True),  # New York -> London in 100 min
        "f": (False, False),
        "g": (False, False),  # same country and org as London; previous ("f") unknown
    }


# --- signals_for against the per-session functions ------------------------------------------------


def random_geo(rng: random.Random) -> GeoInfo | None:
    if rng.random() < 0.1:
        return None
    country = rng.choice(["DE", "FR", "de", None, ""])
    city = rng.choice(["Berlin", "BERLIN", "Paris", "Munich", None, None, ""])
    org = rng.choice(["Telekom", "telekom", "Orange", "Vodafone", None, ""])
    if rng.random() < 0.7:
        lat: float | None = rng.uniform(-60, 60)
        lon: float | None = rng.uniform(-180, 180)
    else:
        lat, lon = (None, None) if rng.random() < 0.5 else (rng.uniform(-60, 60), None)
    return GeoInfo(city=city, country_code=country, org=org, lat=lat, lon=lon)


def random_timeline(rng: random.Random, n: int, *, unique_ids: bool) -> list[Located]:
    items = []
    for i in range(n):
        id_ = f"s{i:03d}" if unique_ids else f"s{rng.randrange(n // 2):03d}"
        minutes = rng.choice([0, 0, 1, 5, 30, 60]) * rng.randrange(40)  # many equal times
        items.append(at(id_, minutes, random_geo(rng)))
    return items


def per_session(sessions: list[Located], timeline: list[Located]) -> dict[str, tuple[bool, bool]]:
    return {s.id: (is_new_location(s, timeline), impossible_travel(s, timeline)) for s in sessions}


def test_signals_for_matches_the_per_session_functions_on_random_timelines() -> None:
    for seed in range(20):
        rng = random.Random(seed)
        timeline = random_timeline(rng, 200, unique_ids=True)
        expected = per_session(timeline, timeline)
        assert signals_for(timeline, timeline) == expected, seed
        # Each signal is exercised both ways.
        assert {new for new, _ in expected.values()} == {True, False}, seed
        assert {fast for _, fast in expected.values()} == {True, False}, seed

        # Sessions that are not in the timeline, and a timeline in another order.
        outsiders = [at(f"x{i:02d}", rng.randrange(40 * 60), random_geo(rng)) for i in range(30)]
        shuffled = timeline[:]
        rng.shuffle(shuffled)
        assert signals_for(outsiders, shuffled) == per_session(outsiders, timeline), seed


def test_signals_for_matches_with_repeated_ids_in_the_timeline() -> None:
    for seed in range(20):
        rng = random.Random(1000 + seed)
        timeline = random_timeline(rng, 200, unique_ids=False)
        sessions = list({s.id: s for s in timeline}.values())  # one per id
        assert signals_for(sessions, timeline) == per_session(sessions, timeline), seed


def test_signals_for_empty_inputs() -> None:
    assert signals_for([], []) == {}
    assert signals_for([], [at("a", 0, BERLIN)]) == {}
    assert signals_for([at("a", 0, BERLIN)], []) == {"a": (True, False)}

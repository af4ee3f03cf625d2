"""The authority and the platform decide a match by one rule (vetohash.signals): for any distances, thresholds
and agreement thresholds, the images the authority counts as flagged when it calibrates are those the
platform's verdicts call a match, by the same signals."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from vetohash import signals
from vetohash_platform.screening import ListVerdict, Side

BITS = {signals.NETWORK: 160, signals.CROPS: 160, signals.DCT: 256}


@st.composite
def cases(draw: st.DrawFn) -> tuple[dict[str, int], dict[str, list[int]], dict[str, int] | None]:
    """A bundle's signals (the network's always, the others maybe), a threshold each, maybe an agreement
    threshold each (at least its threshold), and a batch of images' distances to the nearest hash of each
    signal (thresholds and distances anywhere in 0..bits+1)."""
    names = [signals.NETWORK] + [name for name in (signals.CROPS, signals.DCT) if draw(st.booleans())]
    count = draw(st.integers(1, 20))
    thresholds = {name: draw(st.integers(0, BITS[name])) for name in names}
    agree = {name: draw(st.integers(t, BITS[name])) for name, t in thresholds.items()} \
        if draw(st.booleans()) else None
    distances = {name: draw(st.lists(st.integers(0, BITS[name] + 1), min_size=count, max_size=count))
                 for name in names}
    return thresholds, distances, agree


def by_hand(thresholds: dict[str, int], agree: dict[str, int] | None, row: dict[str, int]) -> tuple[str, ...]:
    """The rule spelled out: the signals below their threshold, and, when two or more are below their
    agreement thresholds, those too."""
    agreeing = agree or thresholds
    close = [name for name in signals.ORDER if name in thresholds and row[name] < agreeing[name]]
    return tuple(name for name in signals.ORDER if name in thresholds
                 and (row[name] < thresholds[name] or (len(close) >= 2 and name in close)))


def verdict(sides: tuple[Side, ...], featureless: bool = False) -> ListVerdict:
    return ListVerdict("A", "0123456789abcdef", "list", 1, "00" * 32, "00", sides, featureless)


@given(cases())
def test_the_authority_s_flags_are_the_platform_s_verdicts(case) -> None:
    thresholds, distances, agree = case
    flags = signals.flagged({name: np.array(d) for name, d in distances.items()}, thresholds, agree)
    for row, flag in enumerate(flags):
        sides = tuple(Side(name, "h1", distances[name][row], thresholds[name], None,
                           None if agree is None else agree[name]) for name in signals.ORDER if name in thresholds)
        platform = verdict(sides)
        assert platform.match == bool(flag)
        assert platform.by == by_hand(thresholds, agree, {name: d[row] for name, d in distances.items()})
        assert verdict(sides, featureless=True).match is False  # a featureless image never matches


def test_two_signals_near_match_together_where_neither_would_alone() -> None:
    thresholds, agree = {signals.NETWORK: 20, signals.DCT: 10}, {signals.NETWORK: 40, signals.DCT: 90}
    near = {signals.NETWORK: np.array([30, 30, 10]), signals.DCT: np.array([80, 95, 200])}
    assert signals.flagged(near, thresholds, agree).tolist() == [True, False, True]
    assert signals.flagged(near, thresholds).tolist() == [False, False, True]  # no agreement: either alone
    assert signals.matched_by({signals.NETWORK: 30, signals.DCT: 80}, thresholds, agree) == (signals.NETWORK,
                                                                                            signals.DCT)
    assert signals.matched_by({signals.NETWORK: 10, signals.DCT: 95}, thresholds, agree) == (signals.NETWORK,)


@given(cases())
def test_a_signal_with_an_empty_list_never_matches(case) -> None:
    """A side without a distance (its list is empty) is as if the bundle lacked that signal."""
    thresholds, distances, agree = case
    for row in range(len(distances[signals.NETWORK])):
        sides = tuple(Side(name, None if name == signals.CROPS else "h1",
                           None if name == signals.CROPS else distances[name][row], thresholds[name], None,
                           None if agree is None else agree[name])
                      for name in signals.ORDER if name in thresholds)
        without = {name: t for name, t in thresholds.items() if name != signals.CROPS}
        expected = signals.flagged({name: np.array([distances[name][row]]) for name in without}, without,
                                   None if agree is None else {n: agree[n] for n in without})[0]
        assert verdict(sides).match == bool(expected)

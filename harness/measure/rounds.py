"""Interleaved rounds: several callables (the variants of one case) timed together until each one's stop rule
says stop, their per-round figures paired, and a contended measurement timed again.

- **Rounds** (:func:`run_rounds`): each round gives every callable that still samples a slice of its budget
  (:func:`round_slice`), in an order shuffled from round to round by a seeded generator, so a change of the
  machine's speed during the case hits every callable alike instead of the one that happened to be timed then.
  A single callable is timed the same way (rounds of one).
- **Pairs** (:func:`paired_figures`): a callable's figure in a round is the median of its samples there; a ratio
  between two callables is taken round by round (:func:`harness.measure.stats.paired_ratio`), so drift that hits
  both sides of a round cancels.
- **Stop** (:class:`harness.measure.stop_rule.StopRule`): with a baseline, a callable's adaptive target also needs
  its paired ratio's 95% interval within ``rel_ci`` (:func:`ratio_within`), and the baseline samples as long as
  any other callable does, since every ratio needs the baseline's figure of the same round.
- **Followers** (the machine yardstick, :mod:`harness.measure.yardstick`): callables timed in the same rounds, in
  the same shuffled order, a fixed slice each, for as long as any callable samples; they never decide when the
  rounds end.
- **Retry**: when any callable's measurement is contended (:mod:`harness.measure.contention`), every callable that
  did not fail is timed again from scratch (so the pairs stay paired), at most ``retries`` times, and only when the
  machine is quiet again.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence

from harness.measure import stats as _stats
from harness.measure.samplers import Sampler
from harness.measure.stop_rule import StopRule

__all__ = ["MIN_PAIRED_ROUNDS", "MIN_ROUNDS", "SLICE_S", "paired_figures", "ratio_within", "round_slice",
           "run_rounds"]

#: How long a round's slice is (timed seconds a callable gets per round, :func:`round_slice`). Shorter slices give
#: more rounds per budget, and more pairs share more of the machine's drift; but the first call of a batch follows
#: another variant's calls and is slower (their data took the caches), so a slice must hold several calls of a
#: millisecond-scale call for the batch's median to be the steady state's. ``python benchmarks/under_load.py
#: repeat`` measures how close the paired ratios come.
SLICE_S = 0.0125
#: Rounds a budget under ``MIN_ROUNDS x SLICE_S`` is split into (shorter slices, so that a small budget is still
#: interleaved).
MIN_ROUNDS = 8
#: Fewest rounds before the adaptive target may stop a callable timed with others: a paired ratio's 95% sign-test
#: interval needs 6 pairs (with 2 to 5 it is only the range of as many per-round ratios, with a lower coverage).
MIN_PAIRED_ROUNDS = 6


def round_slice(budget_s: float) -> float:
    """Timed seconds a callable gets per round: :data:`SLICE_S`, or ``budget_s / MIN_ROUNDS`` when that is less:
    8 rounds at the default budget of 0.1 s, 16 at 0.2 s, 32 at 0.4 s, 80 at 1 s."""
    return min(SLICE_S, budget_s / MIN_ROUNDS)


def paired_figures(base: Sampler, other: Sampler, min_runs: int) -> tuple[list[float], list[float]]:
    """Per-round figures of ``base`` and ``other`` in the rounds that measured both, on the same footing: when
    either had to use its disturbed samples (too few undisturbed ones), both use all of theirs, so a ratio never
    sets a waited-on figure against a quiet one."""
    both = base.uses_all(min_runs) or other.uses_all(min_runs)
    fb = base.round_figures(min_runs, use_all=both or None)
    fo = other.round_figures(min_runs, use_all=both or None)
    common = sorted(set(fb) & set(fo))
    return [fb[r] for r in common], [fo[r] for r in common]


def ratio_within(base: Sampler, other: Sampler, rule: StopRule) -> bool:
    """Whether the paired ratio of ``other`` to ``base`` has a 95% interval (6 pairs or more) narrower than
    ``rule.rel_ci`` x the ratio."""
    if rule.rel_ci is None:
        return False
    b, o = paired_figures(base, other, rule.min_runs)
    if len(b) < MIN_PAIRED_ROUNDS:
        return False
    est = _stats.paired_ratio(b, o)
    return est.estimate > 0 and (est.high - est.low) / est.estimate <= rule.rel_ci


def run_rounds(samplers: Sequence[Sampler], rule: StopRule, seed: int = 0, retries: int = 0,
               quiet: Callable[[], bool] | None = None, after_batch: Callable[[int], None] | None = None,
               on_error: Callable[[int], None] | None = None, baseline: int | None = None,
               followers: Sequence[Sampler] = (), follower_slice_s: float = 0.002) -> tuple[int, str]:
    """Time several callables in interleaved rounds until each one's :class:`StopRule` says stop.

    Each round gives every active sampler a slice of :func:`round_slice` timed seconds (at least one
    sample; no more than what is left of its budget), in an order shuffled from round to round by a generator
    seeded with ``seed``. A call that raises stops its sampler (``sampler.error``); the others go on. When, at the
    end, any sampler's measurement is contended, every sampler that did not fail is timed again from scratch, at
    most ``retries`` times, and only when ``quiet()`` says the machine is quiet again.

    Args:
        samplers: one per callable.
        rule: when a sampler has enough.
        seed: seeds the order of each round.
        retries: the most times the rounds are run again because of contention.
        quiet: whether the machine is quiet now (None: never retry).
        after_batch: called with the sampler's index after each of its batches (e.g. to check its inputs); an
            exception it raises stops that sampler like a failed call.
        on_error: called with the sampler's index as soon as it failed (its row can be written at once).
        baseline: the index of the sampler the others' ratios are taken against (None: no ratios). With an
            adaptive rule, a target reached is then not enough: another sampler goes on until its paired ratio's
            interval is within the target too (or the baseline has stopped), and the baseline goes on while any
            other sampler still samples, so that the ratios have their pairs. The time limit is unchanged.
        followers: samplers timed in every round (``follower_slice_s`` each, at least one sample) while any of
            ``samplers`` is active; their stop reason is ``followed``. Retries time them again too.

    Returns:
        ``(retries_used, note)``: the note says why a contended measurement was not retried ('' otherwise).
    """
    if baseline is not None and not 0 <= baseline < len(samplers):
        raise ValueError(f"baseline={baseline!r} is out of range (allowed: None or a sampler's index, 0 to "
                         f"{len(samplers) - 1})")
    attempt = 0
    while True:
        _sample_until_stopped(samplers, rule, random.Random(seed + 7919 * attempt), after_batch, on_error, baseline,
                              followers, follower_slice_s)
        if not any(s.error is None and s.n and s.contention().contended for s in samplers):
            return attempt, ""
        if attempt >= retries:
            return attempt, (f"not retried (retries={retries})" if retries == 0 else
                             f"still contended after {attempt} retries")
        if quiet is None or not quiet():
            return attempt, "not retried: the machine stayed busy"
        attempt += 1
        for s in [*samplers, *followers]:
            if s.error is None:
                s.reset()


def _sample_until_stopped(samplers: Sequence[Sampler], rule: StopRule, rng: random.Random,
                          after_batch: Callable[[int], None] | None, on_error: Callable[[int], None] | None,
                          baseline: int | None, followers: Sequence[Sampler] = (),
                          follower_slice_s: float = 0.002) -> None:
    """One attempt: rounds in a shuffled order until every sampler has stopped or failed (followers included in
    each round's order, stopped with the last sampler)."""
    n = len(samplers)
    order = list(range(n + len(followers)))
    slice_s = round_slice(rule.budget_s)
    rounds = 0
    while any(s.active for s in samplers):
        rng.shuffle(order)
        for i in order:
            if i >= n:
                _follow(followers[i - n], follower_slice_s, rule.max_runs, rounds)
            elif samplers[i].active:
                _batch(samplers[i], i, rule, slice_s, rounds, after_batch, on_error)
        rounds += 1
        for i in _check_order(n, baseline):
            s = samplers[i]
            if s.active:
                why = rule.check(s, rounds, _needs_more(samplers, i, baseline, rule))
                if why:
                    s.stop_reason = why
    for f in followers:
        if f.active:
            f.stop_reason = "followed"


def _follow(f: Sampler, slice_s: float, max_runs: int, round_index: int) -> None:
    """A follower's batch of one round (its failure stops only itself)."""
    if not f.active or f.n >= max_runs:
        return
    t0 = time.perf_counter()
    try:
        f.take(slice_s, max_runs - f.n, round_index)
    except Exception as exc:
        f.error = exc
    f.wall_s += time.perf_counter() - t0


def _batch(s: Sampler, i: int, rule: StopRule, slice_s: float, round_index: int,
           after_batch: Callable[[int], None] | None, on_error: Callable[[int], None] | None) -> None:
    """Sampler ``i``'s batch of one round: its slice, no more than what is left of its budget and its runs."""
    t0 = time.perf_counter()
    try:
        left = max(0.0, rule.budget_s - s.spent_s)
        s.take(min(slice_s, left), rule.max_runs - s.n, round_index)
        if after_batch is not None:
            after_batch(i)
    except Exception as exc:  # the callable failed: its row says so, the others go on
        s.error = exc
    s.wall_s += time.perf_counter() - t0
    if s.error is not None and on_error is not None:
        on_error(i)


def _check_order(n: int, baseline: int | None) -> list[int]:
    """The samplers' indices with the baseline last (it may stop only when the others have)."""
    return [i for i in range(n) if i != baseline] + ([] if baseline is None else [baseline])


def _needs_more(samplers: Sequence[Sampler], i: int, baseline: int | None,
                rule: StopRule) -> Callable[[], bool] | None:
    """What vetoes sampler ``i``'s adaptive target for the sake of its ratio (None: nothing)."""
    if baseline is None:
        return None
    base = samplers[baseline]
    if i == baseline:
        return lambda: any(s.active for j, s in enumerate(samplers) if j != baseline)
    return lambda: base.active and not ratio_within(base, samplers[i], rule)

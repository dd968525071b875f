"""``compare`` decides with statistics: raw samples, contention, the machine yardstick, recorded intervals, the IQR
fallback, and an exit code for each outcome; the report and the scaling fits say how many rows were contended.

The rows are fixtures in the shape the timing side records (``time_samples_ms`` as a JSON list in a record and a
JSON string in results.csv, ``cpu_share``, ``contended``, ``time_ms_ci_low`` / ``_high``).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from harness.report.build import write_report
from harness.report.compare import compare_main, compare_runs, format_summary
from harness.report.scaling import scaling_table
from harness.report.tables import scaling_markdown
from harness.report.verdicts import noise_floor, ratio_interval
from harness.store.reader import normalize, read_runs
from harness.store.records import RunStore

LENGTHS = (256, 512, 1024, 2048)
VARIANTS = ("full", "chunked", "sdpa")


def _rows(run_id: str, seed: int, factor: dict | None = None, spread: float = 0.03, n_samples: int = 60,
          contended: set | None = None, samples: bool = True, yard: float | dict | None = 1.0,
          threads: int = 2) -> list[dict]:
    """Rows whose samples are lognormal around ``c * N^2``; ``factor[(variant, N)]`` scales the true time; the
    case's yardstick samples are lognormal around 0.7 ms x ``yard`` (a number, or per seq_len; None: not recorded).
    """
    rng = np.random.default_rng(seed)
    yard_of = {n: (yard.get(n, 1.0) if isinstance(yard, dict) else yard) for n in LENGTHS}
    yardsticks = {n: [float(x) for x in 0.7 * yard_of[n] * rng.lognormal(0, 0.01, 40)]
                  for n in LENGTHS if yard is not None}
    rows = []
    for n in LENGTHS:
        for i, v in enumerate(VARIANTS):
            true = (1 + i) * 1e-6 * n**2 * (factor or {}).get((v, n), 1.0)
            s = true * rng.lognormal(0, spread, n_samples)
            hot = (v, n) in (contended or set())
            if hot:
                s = s * 8  # a busy machine: every sample alike, eight times slower
            q1, med, q3 = np.percentile(s, [25, 50, 75])
            row = dict(run_id=run_id, variant=v, status="ok", reason="", device="cpu", dtype="float32", batch=1,
                       heads=4, seq_len=n, head_dim=64, pattern="full", pattern_label="full", mode="fwd", seed=0,
                       inputs="gaussian", threads=threads, time_ms_median=float(med), time_ms_iqr=float(q3 - q1),
                       time_ms_min=float(s.min()), n_runs=n_samples, peak_mem_bytes=8.0 * n * n,
                       err_rel_l2=3e-7, noisy=False, timestamp=f"2026-11-30T12:00:{seed % 60:02d}+00:00",
                       record_id=f"{v}-{n}".ljust(20, "x"))
            if samples:
                row.update(time_samples_ms=[float(x) for x in s], cpu_share=0.4 if hot else 0.98, contended=hot)
                if n in yardsticks:
                    row.update(yardstick_samples_ms=yardsticks[n], yardstick_ms=float(np.median(yardsticks[n])))
            rows.append(row)
    return rows


def _run(root, name: str, rows: list[dict]):
    store = RunStore(root / name)
    for r in rows:
        store.write(r["record_id"], r)
    store.write_csv()
    return store.run_dir


def _labels(c) -> dict:
    return {(r.variant, int(r.seq_len)): r.verdict for r in c.matched.itertuples()}


def test_samples_round_trip_records_csv_and_reader(tmp_path):
    rows = _rows("a", 1)
    run = _run(tmp_path, "a", rows)
    csv = pd.read_csv(run / "results.csv").set_index("record_id")
    text = csv.loc[rows[0]["record_id"], "time_samples_ms"]
    assert json.loads(text) == pytest.approx(rows[0]["time_samples_ms"])  # a JSON string in the CSV
    frame = read_runs(run).frame
    got = frame.set_index("record_id")["time_samples_ms"][rows[0]["record_id"]]
    assert isinstance(got, tuple) and got == pytest.approx(rows[0]["time_samples_ms"])
    only_csv = tmp_path / "copy.csv"
    only_csv.write_text((run / "results.csv").read_text())
    again = read_runs(only_csv).frame.set_index("record_id")["time_samples_ms"][rows[0]["record_id"]]
    assert again == pytest.approx(got)
    assert frame["contended"].dtype == bool and frame["cpu_share"].dtype.kind == "f"


def test_same_code_twice_is_never_faster_or_slower(tmp_path):
    a, b = _run(tmp_path, "a", _rows("a", 1)), _run(tmp_path, "b", _rows("b", 2))
    c = compare_runs(a, b, ["median:5%"])
    assert not c.failed
    labels = set(_labels(c).values())
    assert labels <= {"same", "unsure"} and "same" in labels, _labels(c)


def test_a_significant_20pct_slowdown_fails(tmp_path, capsys):
    a = _run(tmp_path, "a", _rows("a", 1))
    b = _run(tmp_path, "b", _rows("b", 2, factor={("chunked", 1024): 1.2, ("sdpa", 512): 0.7}))
    c = compare_runs(a, b, ["median:5%"])
    labels = _labels(c)
    assert labels[("chunked", 1024)] == "slower" and labels[("sdpa", 512)] == "faster"
    assert c.failed and len(c.failures) == 1 and "chunked" in c.failures[0]
    row = c.matched[(c.matched["variant"] == "chunked") & (c.matched["seq_len"] == 1024)].iloc[0]
    assert row["ratio_low"] > 1.05 and row["ratio"] == pytest.approx(1.2, rel=0.03)
    assert compare_main([str(a), str(b)]) == 1
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert first.startswith("12 of 12 cases judged") and "slower 1" in first and "faster 1" in first
    assert "machine yardstick: median x1.0" in out and "held still" in out
    assert "bootstrap 95% CI of the ratio of medians, 60 vs 60 samples" in row["why"]
    assert out.count("\nsame ") == 0 and "not listed" in out  # unchanged cases are summarised, not listed


def test_a_small_significant_change_is_same_at_5pct_and_slower_at_1pct(tmp_path):
    kw = dict(spread=0.01, n_samples=400)
    a = _run(tmp_path, "a", _rows("a", 1, **kw))
    b = _run(tmp_path, "b", _rows("b", 2, factor={("chunked", 1024): 1.03}, **kw))
    c5 = compare_runs(a, b, ["median:5%"])
    assert _labels(c5)[("chunked", 1024)] == "same" and not c5.failed
    c1 = compare_runs(a, b, ["median:1%"])
    assert _labels(c1)[("chunked", 1024)] == "slower" and c1.failed and len(c1.failures) == 1


def test_a_large_change_in_noisy_samples_is_unsure(tmp_path):
    kw = dict(spread=0.4, n_samples=6)
    a = _run(tmp_path, "a", _rows("a", 1, **kw))
    b = _run(tmp_path, "b", _rows("b", 2, factor={("chunked", 1024): 1.2}, **kw))
    c = compare_runs(a, b, ["median:5%"])
    assert _labels(c)[("chunked", 1024)] == "unsure" and not c.failed
    assert c.exit_code() == 3 and c.exit_code("pass") == 0  # an unsettled interval is not a pass


def test_contended_rows_are_unsure_never_a_regression(tmp_path, capsys):
    hot = {("full", 2048), ("chunked", 512), ("sdpa", 256)}
    a = _run(tmp_path, "a", _rows("a", 1))
    b = _run(tmp_path, "b", _rows("b", 2, contended=hot))
    c = compare_runs(a, b, ["median:5%", "min:5%"])
    labels = _labels(c)
    assert all(labels[k] == "unsure" for k in hot) and not c.failed
    assert c.contended() == (0, 3)
    why = c.matched.set_index(["variant", "seq_len"]).loc[("full", 2048), "why"]
    assert "new contended (got 40% of the CPU asked)" in why
    assert compare_main([str(a), str(b)]) == 3  # inconclusive, never a pass
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("9 of 12 cases judged") and "unsure 3" in out.splitlines()[0]
    assert "not judged: contended 3" in out and "contended rows: 0 in BASE, 3 in NEW" in out
    assert "INCONCLUSIVE: 3 case(s) not judged (contended 3) (exit 3" in out
    assert compare_main([str(a), str(b), "--unsure=pass"]) == 0


def test_rows_without_samples_fall_back_to_their_iqr(tmp_path):
    a = _run(tmp_path, "a", _rows("a", 1, samples=False))
    b = _run(tmp_path, "b", _rows("b", 2, samples=False, factor={("chunked", 1024): 1.3}))
    c = compare_runs(a, b)
    labels = _labels(c)
    assert labels[("chunked", 1024)] == "slower" and c.failed
    assert "no samples" in c.matched.set_index(["variant", "seq_len"]).loc[("chunked", 1024), "why"]
    # a change within the summed IQRs is unsure, not same and not slower
    wide = [dict(r, time_ms_iqr=0.3 * r["time_ms_median"]) for r in _rows("b", 2, samples=False,
                                                                        factor={("chunked", 1024): 1.2})]
    c2 = compare_runs(a, _run(tmp_path, "c", wide))
    assert _labels(c2)[("chunked", 1024)] == "unsure" and not c2.failed


def test_recorded_median_intervals_decide_without_samples(tmp_path):
    def with_ci(rows, width):
        return [dict(r, time_ms_ci_low=r["time_ms_median"] * (1 - width),
                     time_ms_ci_high=r["time_ms_median"] * (1 + width)) for r in rows]

    a = _run(tmp_path, "a", with_ci(_rows("a", 1, samples=False), 0.01))
    b = _run(tmp_path, "b", with_ci(_rows("b", 2, samples=False, factor={("chunked", 1024): 1.2}), 0.01))
    c = compare_runs(a, b)
    assert _labels(c)[("chunked", 1024)] == "slower"
    assert "recorded 95% median intervals" in c.matched.set_index(["variant", "seq_len"]).loc[("chunked", 1024), "why"]


def test_ratio_interval_covers_the_true_ratio():
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(200):
        b, n = rng.lognormal(0, 0.1, 40), rng.lognormal(np.log(1.1), 0.1, 40)
        _, lo, hi = ratio_interval(b, n, n_resamples=1000, seed=int(rng.integers(1 << 30)))
        hits += lo <= 1.1 <= hi
    assert hits >= 180  # nominal 95%: at least 90% of 200 intervals hold the true ratio


def test_report_says_how_many_rows_were_contended_and_scaling_skips_them(tmp_path):
    hot = {("full", 2048), ("chunked", 512)}
    run = _run(tmp_path, "b", _rows("b", 2, contended=hot))
    md = write_report([run], tmp_path / "out", formats=()).read_text()
    head = md[: md.index("## ")]
    assert "**Contention: 2 of 12 timed rows were contended**" in head
    assert "†" in md
    tab = scaling_table(read_runs(run).frame, [])
    full = tab[tab["variant"] == "full"].iloc[0]
    assert full["rows_contended"] == 1 and full["time_fit_points"] == 3 and "contended" in full["note"]
    assert full["time_exponent"] == pytest.approx(2.0, abs=0.1)  # the 8x slower contended point is not fitted
    quiet = write_report([_run(tmp_path, "a", _rows("a", 1))], tmp_path / "out2", formats=()).read_text()
    assert "Contention: none of the 12 timed rows was contended." in quiet


def test_scaling_exponent_interval_and_noise_not_presented_as_fact():
    rng = np.random.default_rng(3)
    rows = []
    for n in (256, 512, 1024, 2048):
        rows.append(dict(variant="nystrom", status="ok", device="cpu", dtype="float32", batch=1, heads=8,
                         seq_len=n, head_dim=64, pattern="full", mode="fwd", time_ms_median=5 * rng.lognormal(0, 0.8),
                         peak_mem_bytes=1e3 * n))
    tab = scaling_table(normalize(pd.DataFrame(rows)), [])
    row = tab.iloc[0]
    assert row["time_exponent_ci_low"] < 0 < row["time_exponent_ci_high"]
    assert "time exponent not resolved" in row["note"]
    assert "| ~0 (" in scaling_markdown(tab)
    assert row["mem_exponent"] == pytest.approx(1.0) and "memory exponent not resolved" not in row["note"]


# ------------------------------------------------------------------------------------------ the machine yardstick
def _cases():
    return [(v, n) for n in LENGTHS for v in VARIANTS]


def test_a_shared_slowdown_with_the_yardstick_still_is_the_code(tmp_path, capsys):
    """Every variant of every case 20% slower (a torch upgrade, a thread setting, code they all call) while the
    yardstick held still: every case is slower and the gate fails."""
    everywhere = {k: 1.20 for k in _cases()}
    a = _run(tmp_path, "a", _rows("a", 1, spread=0.01))
    b = _run(tmp_path, "b", _rows("b", 2, factor=everywhere, spread=0.01))
    c = compare_runs(a, b, ["median:5%"])
    assert c.counts()["slower"] == 12 and c.failed and c.exit_code() == 1
    assert compare_main([str(a), str(b), "--fail", "median:5%"]) == 1
    out = capsys.readouterr().out
    assert "12 of 12 cases judged: slower 12" in out and "held still" in out


def test_a_shared_slowdown_with_the_yardstick_moving_is_the_machine(tmp_path, capsys):
    """The same slowdown with the yardstick 20% slower too: the machine, not judged; exit 3 (0 with
    --unsure=pass)."""
    everywhere = {k: 1.20 for k in _cases()}
    a = _run(tmp_path, "a", _rows("a", 1, spread=0.01))
    b = _run(tmp_path, "b", _rows("b", 2, factor=everywhere, spread=0.01, yard=1.20))
    c = compare_runs(a, b, ["median:5%"])
    assert c.counts()["slower"] == 0 and c.unjudged() == {"machine": 12} and not c.failed
    assert "the machine moved: yardstick x1.19" in c.matched.iloc[0]["why"] and "beyond 3%" in c.matched.iloc[0]["why"]
    assert compare_main([str(a), str(b)]) == 3 and compare_main([str(a), str(b), "--unsure", "pass"]) == 0
    assert "moved in 12 case(s)" in capsys.readouterr().out


def test_many_regressions_stay_loud(tmp_path):
    """Two thirds of the cases 25% slower: each is caught (no noise estimate is taken from the changes judged)."""
    factor = {k: 1.25 for k in _cases() if k[0] != "full"}
    c = compare_runs(_run(tmp_path, "a", _rows("a", 1, spread=0.01)),
                     _run(tmp_path, "b", _rows("b", 2, factor=factor, spread=0.01)), ["median:5%"])
    labels = _labels(c)
    assert all(labels[k] == "slower" for k in factor) and all(labels[("full", n)] == "same" for n in LENGTHS)


def test_only_the_case_whose_yardstick_moved_is_left_unjudged(tmp_path):
    c = compare_runs(_run(tmp_path, "a", _rows("a", 1, spread=0.01)),
                     _run(tmp_path, "b", _rows("b", 2, spread=0.01, yard={512: 0.85})), ["median:5%"])
    causes = {(r.variant, int(r.seq_len)): r.cause for r in c.matched.itertuples()}
    assert {k for k, v in causes.items() if v == "machine"} == {(v, 512) for v in VARIANTS}
    assert c.exit_code() == 3


def test_the_noise_floor_comes_from_the_yardsticks_not_the_variants():
    assert noise_floor([1.0] * 12, 0.05) == (pytest.approx(np.log(1.05)), 12)  # a still machine: the threshold
    spread = [0.97, 1.03, 0.96, 1.04, 0.98, 1.02, 0.95, 1.05, 1.0, 0.99, 1.01, 0.97]
    floor, n = noise_floor(spread, 0.05)
    assert n == 12 and floor > np.log(1.05)
    assert noise_floor([0.9, 1.1], 0.05)[0] == pytest.approx(np.log(1.05))  # too few to estimate a spread


def test_runs_without_a_yardstick_are_judged_and_say_so(tmp_path):
    c = compare_runs(_run(tmp_path, "a", _rows("a", 1, yard=None)),
                     _run(tmp_path, "b", _rows("b", 2, yard=None, factor={("sdpa", 256): 1.3})), ["median:5%"])
    assert _labels(c)[("sdpa", 256)] == "slower" and "no yardstick recorded" in c.matched.iloc[0]["why"]
    assert "not recorded in both runs" in format_summary(c)


def test_different_thread_counts_are_inconclusive_never_a_pass(tmp_path, capsys):
    a = _run(tmp_path, "a", _rows("a", 1, threads=1))
    b = _run(tmp_path, "b", _rows("b", 2, threads=2))
    c = compare_runs(a, b)
    assert len(c.matched) == 0 and c.threads_differ == 12 and c.exit_code() == 3
    assert compare_main([str(a), str(b), "--fail", "median:5%"]) == 3
    out = capsys.readouterr().out
    assert "0 of 0 cases judged" in out and "12 differ only in the thread count" in out
    assert "INCONCLUSIVE: no case matched between the runs; 12 row(s) differ from the other run only in the " \
           "thread count" in out
    assert "only in BASE: 12 row(s), not compared (--all lists them)" in out


def test_input_that_is_not_a_run_is_an_error(tmp_path, capsys):
    run = _run(tmp_path, "a", _rows("a", 1))
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("a,b,c\n1,2,3\n")
    header = tmp_path / "header.csv"
    header.write_text("variant,status,time_ms_median\n")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(bytes(range(256)) * 8)
    for bad, says in ((wrong, "none with a variant and a status"), (header, "holds no result rows"),
                      (binary, "none with a variant and a status")):
        assert compare_main([str(run), str(bad), "--fail", "median:5%"]) == 2, bad
        assert says in capsys.readouterr().err

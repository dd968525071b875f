"""The one reader under a damaged store: records are the truth, nothing dropped or invented silently, reports escape.

Each case of the fault matrix asserts the rows read (count, statuses, no duplicate), the problems named (with the
path), and that ``report``, ``compare`` and ``load_results`` agree.
"""

from __future__ import annotations

import logging
import os
import re

import pandas as pd
import pytest

from harness.report.build import report_main, write_report
from harness.report.compare import compare_main, compare_runs
from harness.report.markdown import md_code, md_text
from harness.run.config import plan_from_config
from harness.run.sweep import run_sweep
from harness.store.reader import find_runs, latest_run, load_results, read_csv_checked, read_runs
from harness.store.records import RunStore
from tests.sweep_helpers import loaded_test_variants

VARIANTS = ("full", "sdpa_math", "chunked", "causal")
N_ROWS = 4 * len(VARIANTS)  # 4 lengths


def _rows(run_id: str = "run") -> list[dict]:
    rows = []
    for n in (64, 128, 256, 512):
        for v in VARIANTS:
            status = "unsupported" if v == "causal" else "ok"
            rows.append(dict(run_id=run_id, variant=v, status=status,
                             reason="pattern=full (supported: causal)" if status != "ok" else "",
                             device="cpu", dtype="float32", batch=1, heads=2, seq_len=n, head_dim=16, pattern="full",
                             pattern_label="full", mode="fwd", seed=0, inputs="gaussian", threads=1,
                             time_ms_median=1e-4 * n if status == "ok" else None,
                             time_ms_iqr=1e-6 * n if status == "ok" else None,
                             timestamp=f"2026-11-30T12:{n % 60:02d}:00+00:00", record_id=f"{v}-{n}".ljust(20, "x")))
    return rows


@pytest.fixture
def run(tmp_path):
    """A run directory with one record per row and a results.csv built from them."""
    store = RunStore(tmp_path / "results" / "run")
    for row in _rows():
        store.write(row["record_id"], row)
    store.write_csv()
    return store.run_dir


def _keys(frame: pd.DataFrame) -> list[tuple]:
    return list(zip(frame["variant"], frame["seq_len"].astype(int)))


def _assert_complete(frame: pd.DataFrame, n: int = N_ROWS) -> None:
    assert len(frame) == n and len(set(_keys(frame))) == n
    assert set(frame["variant"]) <= set(VARIANTS)  # no phantom variant
    assert set(frame["status"]) <= {"ok", "unsupported"}


# ---------------------------------------------------------------------------------------------------- results.csv
def test_truncated_csv_with_intact_records_reads_every_record(run, capsys):
    text = (run / "results.csv").read_text()
    (run / "results.csv").write_text(text[: text.index("\n", len(text) // 2) + 12])  # cut inside a row
    data = read_runs(run)
    _assert_complete(data.frame)
    assert any("results.csv" in p and "rebuilt" in p for p in data.problems), data.problems
    assert len(pd.read_csv(run / "results.csv")) == N_ROWS  # rebuilt from the records
    # the CSV's path given explicitly: still the records
    (run / "results.csv").write_text(text[: len(text) // 3])
    _assert_complete(read_runs(run / "results.csv").frame)
    # report, compare and load_results see the same rows
    assert report_main([str(run), "--out", str(run / "report"), "--no-plots"]) == 0
    summary = pd.read_csv(run / "report" / "summary.csv")
    _assert_complete(summary)
    assert len(load_results(run)) == N_ROWS
    assert len(compare_runs(run, run).matched) == N_ROWS


def test_truncated_csv_without_records_drops_the_cut_row_and_says_so(tmp_path, run):
    text = (run / "results.csv").read_text()
    cut = text[: text.rindex("\nrun,sdpa_math") + len("\nrun,sdpa_ma")]  # ends inside a row's variant
    csv = tmp_path / "copied.csv"
    csv.write_text(cut)
    frame, problems = read_csv_checked(csv)
    whole_rows = cut.count("\n") - 1  # complete lines after the header
    assert len(frame) == whole_rows and "sdpa_ma" not in set(frame["variant"])
    assert len(problems) == 1 and str(csv) in problems[0] and "dropped" in problems[0]
    data = read_runs(csv)
    assert len(data.frame) == whole_rows and data.problems == problems
    assert "sdpa_ma" not in set(data.frame["variant"])
    # cut inside the last field: every field is there, but the missing line break is named
    csv.write_text(text[:-3])
    frame, problems = read_csv_checked(csv)
    assert len(frame) == N_ROWS and len(problems) == 1 and "does not end with a line break" in problems[0]


def test_missing_csv_is_rebuilt_from_records(run):
    (run / "results.csv").unlink()
    data = read_runs(run)
    _assert_complete(data.frame)
    assert any("missing; rebuilt" in p for p in data.problems)
    assert len(pd.read_csv(run / "results.csv")) == N_ROWS


def test_stale_csv_is_rebuilt(run):
    store = RunStore(run)
    row = next(r for r in _rows() if r["variant"] == "full")
    store.write(row["record_id"], dict(row, time_ms_median=99.0, timestamp="2026-12-01T00:00:00+00:00"))
    data = read_runs(run)
    _assert_complete(data.frame)
    assert 99.0 in set(data.frame["time_ms_median"])
    assert any("newer than it" in p for p in data.problems)
    assert 99.0 in set(pd.read_csv(run / "results.csv")["time_ms_median"])
    assert read_runs(run).problems == []  # up to date now


def test_unwritable_run_still_reads_from_records(run, monkeypatch):
    (run / "results.csv").unlink()

    def refuse(*a, **k):
        raise OSError("read-only file system")

    monkeypatch.setattr("harness.store.reader.write_atomic", refuse)
    data = read_runs(run)
    _assert_complete(data.frame)
    assert any("could not rebuild" in p for p in data.problems)


# ---------------------------------------------------------------------------------------------------- records
def _damage(run) -> list:
    files = sorted((run / "records").glob("*.json"))
    files[0].write_text(files[0].read_text()[:40])  # truncated
    files[1].write_text("")  # empty
    files[2].write_text("[1, 2, 3]\n")  # not an object
    return files[:3]


def test_damaged_records_are_named_and_not_counted(run, caplog):
    damaged = _damage(run)
    (run / "results.csv").unlink()
    data = read_runs(run)
    _assert_complete(data.frame, N_ROWS - 3)
    for f in damaged:
        assert any(str(f) in p and "damaged record" in p for p in data.problems), (f, data.problems)
    store = RunStore(run)
    with caplog.at_level(logging.WARNING, logger="attnbench.store"):
        ids = store.ids()
    assert len(ids) == N_ROWS - 3 and not {f.stem for f in damaged} & ids
    assert not any(store.has(f.stem) for f in damaged)
    assert len(store.rows()) == N_ROWS - 3
    # rebuilt CSV holds the readable rows, and says nothing false about the damaged ones
    assert len(pd.read_csv(run / "results.csv")) == N_ROWS - 3


def test_report_and_compare_print_damage_as_one_clear_line_each(run, capsys):
    damaged = _damage(run)
    assert report_main([str(run), "--out", str(run / "report"), "--no-plots"]) == 0
    err = capsys.readouterr().err
    for f in damaged:
        assert f"attnbench report: warning: damaged record {f}" in err
    assert "UserWarning" not in err and "Traceback" not in err
    md = (run / "report" / "report.md").read_text()
    assert "4 problem(s) reading the runs" in md  # 3 damaged records, and the stale results.csv rebuilt
    assert all(str(f) in md for f in damaged)
    assert compare_main([str(run), str(run)]) == 0
    assert "attnbench compare: warning: damaged record" in capsys.readouterr().err


def test_resume_measures_damaged_records_again(tmp_path):
    cfg = {"seq_len": [8, 16], "heads": 1, "head_dim": 4, "budget": 0.005, "warmup": 0, "min_runs": 1,
           "progress": "off", "results_dir": str(tmp_path / "res"), "run_name": "r",
           "variants": ["full", "t_raise"]}
    with loaded_test_variants(tmp_path):
        plan = plan_from_config(cfg, cuda_available=False)
        first = run_sweep(plan, cuda_available=False)
        assert first.measured == 4
        files = sorted((plan.run_dir / "records").glob("*.json"))
        files[0].write_text(files[0].read_text()[:25])
        files[1].write_text("{not json")
        (plan.run_dir / "results.csv").unlink()
        again = run_sweep(plan, cuda_available=False)
    assert (again.measured, again.skipped) == (2, 2)
    data = read_runs(plan.run_dir)
    assert data.problems == [] and len(data.frame) == 4
    assert not data.frame.duplicated(["variant", "seq_len"]).any()
    assert sorted(data.frame["status"]) == ["error", "error", "ok", "ok"]


# ---------------------------------------------------------------------------------------------------- inputs
def test_folder_of_runs_and_latest_run(tmp_path, monkeypatch, capsys):
    results = tmp_path / "results"
    for name, stamp in (("old", 1_000_000), ("new", 2_000_000)):
        store = RunStore(results / name)
        for row in _rows(run_id=name):
            store.write(row["record_id"], row)
        store.write_csv()
        for p in (store.records_dir, store.run_dir / "results.csv"):
            os.utime(p, (stamp, stamp))
    write_report([results / "old"], results / "old" / "report", formats=())  # a report is not a run
    assert find_runs(results) == [results / "new", results / "old"]
    assert latest_run(results) == results / "new"
    both = read_runs(results).frame
    assert len(both) == 2 * N_ROWS and set(both["run"]) == {"old", "new"}
    assert len(load_results(results)) == 2 * N_ROWS
    assert len(compare_runs(results / "old", results / "new").matched) == N_ROWS
    monkeypatch.chdir(tmp_path)
    assert report_main(["--no-plots"]) == 0
    assert (results / "new" / "report" / "report.md").is_file()
    assert "results/new/report/report.md" in capsys.readouterr().out
    assert report_main(["results", "--out", "folder_report", "--no-plots"]) == 0
    assert len(pd.read_csv(tmp_path / "folder_report" / "results.csv")) == 2 * N_ROWS
    monkeypatch.chdir(tmp_path / "results" / "new")
    assert report_main([]) == 2
    assert "no run found under 'results'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------- escaping
ATTACKS = {
    "variant": "<script>alert(1)</script>",
    "reason": 'boom <img src=x onerror="alert(2)"> and ![img](http://evil.example/x.png)',
    "run_id": "![track](http://evil.example/t.png)<b>run</b>",
}


def test_report_escapes_names_messages_and_run_names(tmp_path):
    rows = _rows(run_id=ATTACKS["run_id"])
    for r in rows:
        if r["variant"] == "chunked":
            r["variant"] = ATTACKS["variant"]
        if r["variant"] == "causal":
            r.update(status="error", reason=ATTACKS["reason"])
    store = RunStore(tmp_path / "evil")
    for r in rows:
        store.write(r["record_id"], r)
    md = write_report([store.run_dir], tmp_path / "out", formats=()).read_text()
    unsafe = re.compile(r"<script|<img|<b>|(?<!\\)\]\(http|!\[[^\]]*\]\((?!plots/)")
    for line in md.splitlines():
        # only inside an inline code span (shown verbatim) may the raw text appear
        outside = line.split("`")[::2]
        assert not any(unsafe.search(part) for part in outside), line
    assert "&lt;script&gt;" in md and "&lt;img src=x onerror=" in md
    assert "\\!" in md or "!\\[" in md  # the image syntax is broken
    assert "`<script>alert(1)</script>`" in md  # the variant named verbatim in code


@pytest.mark.parametrize("text", list(ATTACKS.values()) + ["a|b", "line\nbreak", "`tick`"])
def test_md_text_and_code_are_inert(text):
    esc = md_text(text)
    assert "<" not in esc and "\n" not in esc and not re.search(r"(?<!\\)\]\(", esc)
    assert "|" not in esc.replace("\\|", "")
    code = md_code(text)
    if code.startswith("`"):
        assert code.count("`") == 2 and "\n" not in code

"""The results store: stable record ids, atomic writes, stale temp files, load_results, concurrency, SIGKILL."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from harness import Case, Pattern
from harness.base.files import write_atomic
from harness.store.columns import PUBLIC_COLUMNS
from harness.store.reader import load_results
from harness.store.records import RunStore, record_id, record_key
from tests.sweep_helpers import read_records, write_variants

ROOT = Path(__file__).resolve().parent.parent


def _row(run: str, variant: str, seq_len: int, mode: str = "fwd", **kw) -> dict:
    return {"run_id": run, "variant": variant, "status": "ok", "device": "cpu", "dtype": "float32", "batch": 1,
            "heads": 1, "seq_len": seq_len, "head_dim": 4, "pattern": "full", "mode": mode, "seed": 0,
            "time_ms_median": 1.0, "extra_col": 7, **kw}


def test_record_id_is_stable_and_names_what_matters():
    c = Case(batch=1, heads=2, seq_len=16, head_dim=8)
    same = Case(batch=1, heads=2, seq_len=16, head_dim=8)
    assert record_id(c, "full") == record_id(same, "full")
    rid = record_id(c, "full")
    assert len(rid) == 20 and int(rid, 16) >= 0
    ids = {
        record_id(c, "full"), record_id(c, "sdpa"), record_id(Case(seq_len=16, heads=2, head_dim=8, mode="fwd_bwd"),
                                                             "full"),
        record_id(Case(seq_len=16, heads=2, head_dim=8, pattern=Pattern("window", window=4)), "full"),
        record_id(Case(seq_len=16, heads=2, head_dim=8, pattern=Pattern("window", window=8)), "full"),
        record_id(c, "full", threads=1),
    }
    assert len(ids) == 6


def test_cpu_timer_enters_the_key_of_cpu_records_only_when_not_the_default():
    c = Case(batch=1, heads=2, seq_len=16, head_dim=8)
    gpu = Case(batch=1, heads=2, seq_len=16, head_dim=8, device="cuda")
    # ids of records made before cpu_timer was a key (computed with the store of commit 0a21428) stay the same
    assert record_id(c, "full") == record_id(c, "full", cpu_timer="per_call") == "a089f51743630e26475d"
    assert record_id(gpu, "full", threads=2) == "a1a1f69945e8393221f5"
    assert record_id(c, "full", cpu_timer="blocked_autorange") != record_id(c, "full")
    assert record_key(c, "full", cpu_timer="blocked_autorange")["cpu_timer"] == "blocked_autorange"
    assert record_id(gpu, "full", 2, cpu_timer="blocked_autorange") == record_id(gpu, "full", 2)  # not a CPU case


def test_atomic_write_leaves_old_or_new_never_part(tmp_path, monkeypatch):
    target = tmp_path / "x.json"
    write_atomic(target, '{"a": 1}')

    def failing_replace(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError):
        write_atomic(target, '{"a": 2}')
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_torn_temp_files_are_ignored_and_stale_ones_removed(tmp_path):
    store = RunStore(tmp_path / "run")
    store.write("a" * 20, _row("run", "full", 8))
    host = __import__("socket").gethostname().replace(".", "_")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = store.records_dir / f".{'b' * 20}.json.{host}.{dead_pid}.0123abcd.tmp"
    stale.write_text('{"run_id": "run", "vari')  # half-written, as after SIGKILL
    live = store.records_dir / f".{'c' * 20}.json.{host}.{os.getpid()}.0123abcd.tmp"
    live.write_text('{"run_id"')
    assert len(store.rows()) == 1 and store.ids() == {"a" * 20}
    assert len(load_results(store.run_dir)) == 1
    assert store.clean_stale_temps() == 1
    assert not stale.exists() and live.exists()


def test_load_results_run_dir_root_csv_and_lists(tmp_path):
    for run, n in (("r1", 2), ("r2", 3)):
        store = RunStore(tmp_path / "results" / run)
        for i in range(n):
            store.write(f"{run}{i:018d}", _row(run, f"v{i}", 8 * (i + 1)))
        store.write_csv()
    one = load_results(tmp_path / "results" / "r1")
    assert len(one) == 2 and list(one.columns[: len(PUBLIC_COLUMNS)]) == list(PUBLIC_COLUMNS)
    assert "extra_col" in one.columns[len(PUBLIC_COLUMNS):]
    both = load_results(tmp_path / "results")
    assert sorted(both["run_id"].unique()) == ["r1", "r2"] and len(both) == 5
    from_csv = load_results([tmp_path / "results" / "r1" / "results.csv", tmp_path / "results" / "r2"])
    assert len(from_csv) == 5
    import harness.report

    assert harness.report.load_results is load_results
    with pytest.warns(DeprecationWarning, match="import it from harness.report"):
        assert harness.load_results is load_results  # the old name still works, and says where it went
    with pytest.raises(ValueError, match="does not exist"):
        load_results(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no results"):
        load_results(tmp_path / "empty")


def _writer(run_dir: str, worker: int, n: int) -> None:
    store = RunStore(run_dir)
    for i in range(n):
        rid = f"{i % 50:020d}"  # the two workers write the same 50 ids, over and over
        store.write(rid, _row("c", f"v{i % 50}", 8, worker=worker, i=i))


def test_concurrent_writers_into_one_run(tmp_path):
    ctx = mp.get_context("spawn" if sys.platform == "darwin" else "fork")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path / "run"), w, 300)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    rows = read_records(tmp_path / "run")  # every file parses
    assert len(rows) == 50
    assert not list((tmp_path / "run" / "records").glob(".*"))
    df = pd.read_csv(RunStore(tmp_path / "run").write_csv())
    assert len(df) == 50


def _count(records: Path) -> int:
    return len([p for p in records.glob("*.json") if not p.name.startswith(".")]) if records.is_dir() else 0


@pytest.mark.slow  # two subprocess starts (torch + Hydra): ~15-30 s on a busy 2-core machine
def test_sigkill_part_way_then_resume_gives_exactly_one_row_each(tmp_path):
    vfile = write_variants(tmp_path)
    run_dir = tmp_path / "res" / "k"
    cmd = [sys.executable, "-m", "harness", "sweep", f"results_dir={tmp_path / 'res'}", "run_name=k",
           f"variants_from=[{vfile}]", "variants=[full,t_slow]", "seq_len=[8,16,24,32]", "heads=1", "head_dim=4",
           "pattern=full", "mode=[fwd,fwd_bwd]", "budget=0.005", "warmup=0", "min_runs=1", "progress=plain"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ATTNBENCH_TEST_SLOW_S": "0.1"}
    expected = 4 * 2 * 2
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while _count(run_dir / "records") < 3:
            assert proc.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() < deadline, "no records appeared"
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = _count(run_dir / "records")
    assert 3 <= killed_at < expected
    assert len(read_records(run_dir)) == killed_at  # what exists is whole

    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"kept {killed_at} existing" in done.stderr
    rows = read_records(run_dir)
    keys = [(r["variant"], r["seq_len"], r["mode"]) for r in rows]
    assert len(keys) == expected and len(set(keys)) == expected
    df = load_results(run_dir)
    assert len(df) == expected and not df.duplicated(["variant", "seq_len", "mode"]).any()
    assert set(df["status"]) == {"ok"}
    csv = pd.read_csv(run_dir / "results.csv")
    assert len(csv) == expected
    assert not list((run_dir / "records").glob(".*.tmp"))  # the killed writer's temp file (if any) is gone
    assert list(tmp_path.iterdir()) and not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()

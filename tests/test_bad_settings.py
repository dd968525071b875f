"""Every bad setting fails before any work, naming the key, the value and what is allowed (issue 14.6).

Each case runs the CLI in this process: exit status 2, one clear line on stderr, no traceback, nothing written
(neither the results directory nor anything in the current directory).
"""

from __future__ import annotations

import os

import pytest

from harness.cli import main as cli
from harness.run.config import INT_MAX, ConfigError, plan_from_config

TINY = ["heads=1", "head_dim=4", "seq_len=8", "budget=0.005", "warmup=0", "min_runs=1", "variants=full",
        "progress=plain"]


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    d = tmp_path / "cwd"
    d.mkdir()
    monkeypatch.chdir(d)
    return d


def _refused(capsys, argv: list[str], *needles: str) -> str:
    code = cli.main(["sweep", *argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def test_results_dir_that_is_a_file_or_under_a_file(tmp_path, cwd, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    _refused(capsys, [f"results_dir={f}", *TINY], f"results_dir='{f}': {f} exists and is not a directory",
             "(allowed: a directory, or a path that can be created)")
    _refused(capsys, [f"results_dir={f}/sub", *TINY], f"{f} exists and is not a directory")
    res = tmp_path / "res"
    (res / "run1").parent.mkdir()
    (res / "run1").write_text("not a run")
    _refused(capsys, [f"results_dir={res}", "run_name=run1", *TINY], "run_name='run1'", "is not a directory")
    assert list(cwd.iterdir()) == [] and f.read_text() == "x"


def test_unwritable_results_dir(tmp_path, cwd, capsys, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    if os.geteuid() == 0:  # root writes through permissions: make the check see what a normal user would
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) == str(locked) else real(p, mode))
    try:
        _refused(capsys, [f"results_dir={locked}/res", *TINY], f"results_dir='{locked}/res': {locked} is not "
                 "writable by this user (allowed: a directory this user can write")
    finally:
        locked.chmod(0o755)
    assert list(locked.iterdir()) == []


def test_read_only_filesystem_is_named(tmp_path, monkeypatch):
    real = os.statvfs

    class RO:
        f_flag = os.ST_RDONLY

    monkeypatch.setattr(os, "statvfs", lambda p: RO() if str(p) == str(tmp_path) else real(p))
    with pytest.raises(ConfigError, match="is on a read-only filesystem"):
        plan_from_config({"results_dir": str(tmp_path / "res"), "run_name": "r"}, cuda_available=False,
                         load_variants=False)


def test_overlong_names(tmp_path, cwd, capsys):
    res = tmp_path / "res"
    _refused(capsys, [f"results_dir={res}", f"run_name={'r' * 300}", *TINY], "is 300 bytes long",
             "(allowed: at most 255 bytes per file name on this filesystem)", "run_name=")
    _refused(capsys, [f"results_dir={tmp_path / ('d' * 256)}", *TINY], "results_dir=", "is 256 bytes long")
    with pytest.raises(ConfigError, match="is 256 bytes long"):  # bytes, not characters
        plan_from_config({"results_dir": str(res), "run_name": "é" * 128}, cuda_available=False, load_variants=False)
    assert not res.exists() and list(cwd.iterdir()) == []
    plan = plan_from_config({"results_dir": str(res), "run_name": "r" * 255}, cuda_available=False,
                            load_variants=False)
    assert plan.run_dir.name == "r" * 255  # the longest allowed name is fine


@pytest.mark.parametrize(("override", "needle"), [
    ("seq_len=1e20", "seq_len=1e+20 is out of range (allowed: an integer from 1 to 16777216)"),
    (f"seq_len={2**24 + 1}", f"seq_len={2**24 + 1} is out of range (allowed: an integer from 1 to {2**24})"),
    (f"batch={2**21}", f"batch={2**21} is out of range (allowed: an integer from 1 to {INT_MAX['batch']})"),
    (f"heads={2**17}", "heads=131072 is out of range"), (f"head_dim={2**17}", "head_dim=131072 is out of range"),
    (f"window={2**25}", "window=33554432 is out of range"), ("seed=18446744073709551616", "seed="),
    ("tokens=1e30", "tokens="), ("budget=1e300", "budget=1e+300 is not allowed (allowed: seconds, a number > 0 and "
                                                 "<= 1e+06)"),
    ("case_timeout_s=1e7", "case_timeout_s=10000000.0 is not allowed"), ("min_runs=10000001", "min_runs="),
    ("warmup=1e9", "warmup="),
    ("batch=1024", "batch x heads x seq_len x head_dim = 1024 x 1024 x 1048576 x 64 = 70368744177664 elements per "
                   "tensor is too large (allowed: at most 1099511627776 = 2**40)"),
])
def test_numbers_that_would_overflow_later_are_refused(tmp_path, cwd, capsys, override, needle):
    argv = [f"results_dir={tmp_path / 'res'}", *TINY, override]
    if override == "batch=1024":
        argv += ["heads=1024", "seq_len=1048576", "head_dim=64"]
    err = _refused(capsys, argv, needle)
    assert override.split("=")[0] in err
    assert not (tmp_path / "res").exists()


@pytest.mark.parametrize(("body", "needle"), [
    ("raise SystemExit(0)\n", "importing it called exit(0); a variants file must only define and register variants"),
    ("import sys\nsys.exit(3)\n", "importing it called exit(3)"),
    ("raise RuntimeError('broken plugin')\n", "importing it failed: RuntimeError: broken plugin"),
    ("import os\nos.environ['ATTNBENCH_TEST_X'] = '1'\nraise SystemExit\n", "importing it called exit(None)"),
])
def test_a_variants_file_that_exits_or_raises_at_import(tmp_path, cwd, capsys, body, needle):
    plugin = tmp_path / "plugin.py"
    plugin.write_text(body)
    _refused(capsys, [f"results_dir={tmp_path / 'res'}", f"variants_from=[{plugin}]", *TINY],
             f"variants_from='{plugin}'", needle)
    assert not (tmp_path / "res").exists()
    assert cli.main(["list", "--variants-from", str(plugin)]) == 2  # the other commands that load files too
    assert needle in capsys.readouterr().err
    assert cli.main(["check", "full", "--from", str(plugin)]) == 2
    assert needle in capsys.readouterr().err

"""The attnbench CLI end to end, in process: sweeps, multirun, Hydra outputs inside the run dir, errors, list."""

from __future__ import annotations

import os
import re
import sys
import types
from pathlib import Path

import pandas as pd
import pytest
import torch

from harness.cli import main as cli
from harness.run import launch
from tests.sweep_helpers import loaded_test_variants, read_records

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks behaviour on a machine without CUDA")
TINY = ["heads=1", "head_dim=4", "budget=0.005", "warmup=0", "min_runs=1", "pattern=full", "progress=plain"]


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    """An empty current directory, to check that nothing is written into it."""
    d = tmp_path / "cwd"
    d.mkdir()
    monkeypatch.chdir(d)
    return d


@pytest.fixture
def tvars(tmp_path):
    with loaded_test_variants(tmp_path) as path:
        yield path


def _sweep(argv, capsys):
    code = cli.main(["sweep", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_sweep_end_to_end_outputs_inside_run_dir(tmp_path, cwd, capsys, tvars):
    res = tmp_path / "res"
    code, out, err = _sweep([f"results_dir={res}", "run_name=e2e", "seq_len=[8,16]", "mode=[fwd,fwd_bwd]",
                             "variants=[full,t_raise]", *TINY], capsys)
    assert code == 0, err
    run = res / "e2e"
    assert out.strip().splitlines()[-1] == str(run)
    assert list(cwd.iterdir()) == []
    assert (run / ".hydra" / "config.yaml").is_file() and (run / "attnbench.log").is_file()
    assert "seq_len" in (run / ".hydra" / "config.yaml").read_text()
    env = __import__("json").loads((run / "env.json").read_text())
    assert env["config"]["seq_len"] == [8, 16] and env["environment"]["torch_version"] == torch.__version__
    df = pd.read_csv(run / "results.csv")
    assert len(df) == 8
    assert dict(df["status"].value_counts()) == {"ok": 4, "error": 4}
    assert "[8/8]" in err and "t_raise: error RuntimeError" in err
    # the same line again resumes: nothing is measured twice
    code, out, err = _sweep([f"results_dir={res}", "run_name=e2e", "seq_len=[8,16]", "mode=[fwd,fwd_bwd]",
                             "variants=[full,t_raise]", *TINY], capsys)
    assert code == 0 and "measured 0" in err and "kept 8 existing" in err
    assert len(read_records(run)) == 8


def test_comma_list_without_m_is_one_job_and_default_run_name(tmp_path, cwd, capsys):
    res = tmp_path / "res"
    code, out, err = _sweep([f"results_dir={res}", "seq_len=8,16", "variants=full", "mode=fwd", *TINY], capsys)
    assert code == 0, err
    runs = list(res.iterdir())
    assert len(runs) == 1 and re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d", runs[0].name)
    assert not (runs[0] / "jobs").exists() and len(read_records(runs[0])) == 2
    assert list(cwd.iterdir()) == []


@NO_CUDA
def test_multirun_mixed_devices_gives_unsupported_cuda_rows(tmp_path, cwd, capsys):
    res = tmp_path / "res"
    code, out, err = _sweep(["-m", f"results_dir={res}", "run_name=mr", "seq_len=8,16", "device=cpu,cuda",
                             "variants=full", "mode=fwd", *TINY], capsys)
    assert code == 0, err
    run = res / "mr"
    assert sorted(p.name for p in (run / "jobs").iterdir()) == ["0", "1", "2", "3"]
    assert (run / "jobs" / "0" / ".hydra" / "overrides.yaml").is_file() and (run / "multirun.yaml").is_file()
    assert list(cwd.iterdir()) == []
    df = pd.read_csv(run / "results.csv")
    assert len(df) == 4
    cuda = df[df["device"] == "cuda"]
    assert set(cuda["status"]) == {"unsupported"} and cuda["reason"].str.contains("no CUDA device").all()
    assert set(df[df["device"] == "cpu"]["status"]) == {"ok"}


@NO_CUDA
def test_cuda_alone_is_an_error_before_work(tmp_path, cwd, capsys):
    code, out, err = _sweep([f"results_dir={tmp_path / 'res'}", "device=cuda", *TINY], capsys)
    assert code == 2 and "device=cuda: no CUDA device" in err
    code, out, err = _sweep(["-m", f"results_dir={tmp_path / 'res'}", "device=cuda", "seq_len=8,16", *TINY], capsys)
    assert code == 2
    assert not (tmp_path / "res").exists() and list(cwd.iterdir()) == []


@pytest.mark.parametrize("override,needle", [
    ("seq_len=0", "seq_len=0 is out of range (allowed: an integer >= 1)"),
    ("heads=0", "heads=0 is out of range"), ("batch=-1", "batch=-1 is out of range"),
    ("head_dim=0", "head_dim=0 is out of range"), ("window=0", "window=0 is out of range"),
    ("dtype=float8", "dtype='float8' is not a known dtype (allowed: float32"),
    ("pattern=diag", "pattern='diag' is not a known pattern (allowed: full, causal"),
    ("mode=back", "mode='back' is not a known mode"), ("device=tpu", "device='tpu' is not a known device"),
    ("variants=[nope]", "matches no variant (known: "), ("seqlen=4", "unknown key 'seqlen'"),
    ("budget=abc", "could not be converted to Float"), ("preset=nope", "Could not find 'preset/nope'"),
])
def test_bad_input_exits_2_before_any_work(tmp_path, cwd, capsys, override, needle):
    res = tmp_path / "res"
    code, out, err = _sweep([f"results_dir={res}", override, "-m", "seed=0,1"], capsys)
    assert code == 2
    assert needle in err and "Traceback" not in err
    assert not res.exists() and list(cwd.iterdir()) == []


def test_grid_building_presets_and_multirun_rules():
    grid = launch.build_grid([], cuda_available=False)  # what `attnbench` with no arguments runs
    assert not grid.multirun and len(grid.plans) == 1
    assert {c.device for c in grid.plans[0].cases} == {"cpu"} and len(grid.plans[0].cases) == 12
    assert re.fullmatch(r"run_name=\d{4}-.*", grid.overrides[-1])
    lc = launch.build_grid(["preset=long_context"], cuda_available=False)
    assert lc.multirun and [p.cases[0].seq_len for p in lc.plans] == [4096, 8192, 16384]
    lc2 = launch.build_grid(["preset=long_context", "seq_len=1024"], cuda_available=False)
    assert {c.seq_len for p in lc2.plans for c in p.cases} == {1024}
    m = launch.build_grid(["seq_len=8,16", "heads=1,2"], multirun=True, cuda_available=False)
    assert m.multirun and len(m.plans) == 4 and {len(p.cases) for p in m.plans} == {4}
    # without -m an axis list stays in one job; a sweep on a non-axis key (budget) implies multirun
    one = launch.build_grid(["seq_len=8,16", "variants=full,full", "budget=0.1,0.2"], cuda_available=False)
    assert one.multirun and len(one.plans) == 2 and len(one.plans[0].cases) == 8
    assert "seq_len=[8,16]" in one.overrides and "variants=[full,full]" in one.overrides
    gpu = launch.build_grid(["preset=gpu"], cuda_available=True)
    assert {c.batch * c.seq_len for c in gpu.plans[0].cases} == {16384}


def test_hydra_info_flags_are_answered_by_hydras_own_app(capfd):
    """`--cfg job` goes to the `@hydra.main` app (python -m harness.run.launch) unchanged; nothing is measured."""
    assert cli.main(["sweep", "--cfg", "job", "seq_len=8", "heads=3"]) == 0
    out = capfd.readouterr().out
    assert "seq_len: 8" in out and "heads: 3" in out and "variants:" in out


def test_hydras_app_child_imports_this_harness(monkeypatch):
    """The child answering Hydra's flags gets the folder holding this ``harness`` package first on PYTHONPATH."""
    import subprocess

    import harness

    seen = {}
    monkeypatch.setattr(subprocess, "call", lambda cmd, env: seen.update(cmd=cmd, env=env) or 0)
    assert launch.run_hydra_app(["--info"]) == 0
    first = Path(seen["env"]["PYTHONPATH"].split(os.pathsep)[0])
    assert (first / "harness" / "__init__.py").resolve() == Path(harness.__file__).resolve()
    assert seen["cmd"][1:] == ["-m", "harness.run.launch", "--info"]


def test_sweep_leaves_sys_argv_alone_and_a_failing_job_is_exit_1(tmp_path, cwd, capsys, monkeypatch):
    import harness.run.sweep

    argv = list(sys.argv)
    seen = []

    def boom(plan, **kw):
        seen.append(list(sys.argv))
        raise RuntimeError("boom in the job")

    monkeypatch.setattr(harness.run.sweep, "run_sweep", boom)
    for extra in ([], ["-m", "seed=0,1"]):
        code, out, err = _sweep([f"results_dir={tmp_path / 'res'}", "run_name=f", "seq_len=8", "variants=full",
                                 *extra, *TINY], capsys)
        assert code == 1 and "job 0 failed: RuntimeError: boom in the job" in err and "Traceback" not in err
    assert seen == [argv] * 3 and sys.argv == argv


def test_no_arguments_runs_the_default_sweep(monkeypatch):
    seen = []
    monkeypatch.setattr(cli, "sweep_main", lambda argv: seen.append(argv) or 0)
    assert cli.main([]) == 0 and seen == [[]]


def test_report_hook_called_after_a_sweep(tmp_path, cwd, capsys, monkeypatch):
    calls = []
    fake = types.ModuleType("harness.report.build")
    fake.report_with_background_plots = lambda runs, out_dir: calls.append((runs, out_dir)) or (
        out_dir / "report.md", 123)
    fake.report_main = lambda argv: 7 if argv == ["x"] else 1
    fake.__spec__ = types.SimpleNamespace(name="harness.report.build")
    monkeypatch.setitem(sys.modules, "harness.report.build", fake)
    code, out, err = _sweep([f"results_dir={tmp_path / 'res'}", "run_name=rep", "seq_len=8", "variants=full",
                             "mode=fwd", *TINY], capsys)
    assert code == 0 and calls == [([tmp_path / "res" / "rep"], tmp_path / "res" / "rep" / "report")]
    assert f"report: {tmp_path / 'res' / 'rep' / 'report' / 'report.md'} (plots: drawn in the background" in out
    assert cli.main(["report", "x"]) == 7


def test_an_unknown_command_is_refused(capsys):
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate' (allowed: sweep, list, report, compare, check" in capsys.readouterr().err


def test_help_paths_import_neither_torch_nor_hydra():
    """`--help` and `sweep --help` answer without torch (slow to import) or Hydra."""
    code = ("import contextlib, io, sys\n"
            "from harness.cli import main as cli\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            "    assert cli.main(['--help']) == 0 and cli.main(['sweep', '--help']) == 0\n"
            "heavy = sorted(m for m in ('torch', 'hydra', 'omegaconf', 'pandas') if m in sys.modules)\n"
            "print(heavy, len(out.getvalue()))\n")
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root,
                          env={**__import__("os").environ, "PYTHONPATH": str(root)}, check=True)
    heavy, size = done.stdout.split("]")
    assert heavy == "[" and int(size) > 2000, done.stdout


def test_sweep_help_shows_what_a_plain_sweep_uses_and_the_presets(capsys):
    assert cli.main(["sweep", "--help"]) == 0
    text = capsys.readouterr().out
    rows = {ln.split()[0]: ln for ln in text.splitlines() if ln.startswith("  ") and ln[2:3].strip()}  # not wraps
    import configs
    from harness.cli.helptext import fmt_value
    from harness.run.config import schema_keys

    preset = configs.default_preset()
    keys, grid = configs.preset_values(preset)
    assert keys, "the default preset sets some keys"
    for key, _, default, _ in schema_keys():  # the preset's value with a star, else the schema's default
        if key in grid:
            assert f"{fmt_value(grid[key])} * (one job each)" in rows[key]
        elif key in keys:
            assert f" {fmt_value(keys[key])} *" in rows[key], (key, rows[key])
        else:
            assert f" {fmt_value(default)}" in rows[key] and " *" not in rows[key], (key, rows[key])
    assert f"the {preset} preset applied to the schema's" in text
    for name, words in (("quick", "The default sweep"), ("long_context", "Long sequences"),
                        ("gpu", "FlashAttention-paper grid"), ("none", "No preset")):
        assert any(ln.split()[0] == name and words in ln for ln in text.splitlines() if ln.strip()), name
    for key, typ, _, _ in schema_keys():  # cells are separated by two spaces or more: never run together
        parts = re.split(r" {2,}", rows[key].strip())
        assert parts[:2] == [key, typ] and len(parts) in (3, 4), rows[key]


def test_table_moves_an_overlong_cell_instead_of_running_into_the_next_column():
    from harness.cli.helptext import table

    text = table([("key", "a-much-too-long-value", "meaning of it")], [3, 6], total=80)
    assert text.splitlines() == ["  key  a-much-too-long-value", " " * 15 + "meaning of it"]
    wrapped = table([("k", "v", "word " * 30)], [1, 1], total=40).splitlines()
    assert len(wrapped) > 1 and all(len(ln) <= 40 for ln in wrapped)
    assert all(ln.startswith(" " * 8) for ln in wrapped[1:])


def test_help_on_each_command(capsys):
    assert cli.main(["--help"]) == 0
    assert "sweep" in capsys.readouterr().out
    assert cli.main(["sweep", "--help"]) == 0
    text = capsys.readouterr().out
    for key in ("seq_len", "heads", "device", "variants", "results_dir", "run_name", "quick", "long_context"):
        assert key in text
    assert cli.main(["list", "--help"]) == 0
    assert "WILDCARD" in capsys.readouterr().out.upper()


def test_list_is_one_line_per_variant(capsys, tvars):
    from harness.core.registry import get_variant, list_variants

    assert cli.main(["list"]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("attnbench list: loading the variants")  # said before torch is imported
    lines = captured.out.splitlines()
    names = list_variants()
    assert lines[0].split() == ["NAME", "FAMILY", "EXACT", "DEVICES", "PATTERNS"]
    assert [ln.split()[0] for ln in lines[1:1 + len(names)]] == names
    assert len(lines) <= len(names) + 3 and all(len(ln) <= 100 for ln in lines)
    starts = [lines[0].index(h) for h in ("FAMILY", "EXACT", "DEVICES", "PATTERNS")]
    for ln in lines[1:1 + len(names)]:  # aligned columns, never run together
        assert all(ln[s - 2:s] == "  " and ln[s] != " " for s in starts), ln
    full = next(ln for ln in lines if ln.startswith("full "))
    assert full.split()[1:3] == ["full", "yes"] and full.rstrip().endswith("all")
    assert next(ln for ln in lines if ln.startswith("linear ")).split()[2] == "no"
    assert get_variant("t_fwdonly").name in captured.out
    if not torch.cuda.is_available():
        assert "cuda*" in captured.out and "* no CUDA device on this machine" in captured.out
    assert cli.main(["list", "t_f*"]) == 0
    assert "\nfull " not in capsys.readouterr().out


def test_list_verbose_shows_support_and_reasons(capsys, tvars):
    assert cli.main(["list", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^full \(exact\)", out, re.M)
    assert "patterns  yes: full, causal, window, window_sym, block_sparse, block_sparse_causal" in out
    assert "float64: dtype=float64 (supported:" in out
    if not torch.cuda.is_available():
        assert "cuda: no CUDA device on this machine" in out
    assert "t_fwdonly" in out and "mode=fwd_bwd needs a backward pass" in out
    assert cli.main(["list", "t_f*", "-v"]) == 0
    assert "full (exact)" not in capsys.readouterr().out
    assert cli.main(["list", "zzz*"]) == 2

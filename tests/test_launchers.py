"""Hydra launchers (joblib, submitit_local, the slurm_gpu preset) drive the sweep unchanged into one run directory;
jobs that share a device are noticed."""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main as cli
from harness.run.config import plan_from_config
from harness.run.sharing import MARKER_DIR, SharedDeviceWarning, SharingMonitor, cpu_cores, sharing_warning
from harness.run.sweep import expected_ids, run_sweep
from tests.sweep_helpers import read_records

ROOT = Path(__file__).resolve().parents[1]


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # the hydra_plugins namespace itself is absent: no launcher plugin at all
        return False


HAS_JOBLIB = _installed("hydra_plugins.hydra_joblib_launcher")
HAS_SUBMITIT = _installed("hydra_plugins.hydra_submitit_launcher")
needs_joblib = pytest.mark.skipif(not HAS_JOBLIB, reason="hydra-joblib-launcher is not installed "
                                  "(pip install 'attnbench[cluster]')")
needs_submitit = pytest.mark.skipif(not HAS_SUBMITIT, reason="hydra-submitit-launcher is not installed "
                                    "(pip install 'attnbench[cluster]')")
TINY = ["heads=1", "head_dim=4", "budget=0.01", "warmup=0", "min_runs=1", "pattern=causal", "progress=plain",
        "variants=[full,causal]"]


@pytest.fixture
def launcher_env(tmp_path, monkeypatch):
    """Jobs in other processes import this checkout; no report (not what is tested, and slow)."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setattr(cli, "_maybe_report", lambda run_dir: None)
    d = tmp_path / "cwd"
    d.mkdir()
    monkeypatch.chdir(d)
    return tmp_path / "res"


def _expected(res: Path, seq_lens: list[int], modes: list[str]) -> set[str]:
    plan = plan_from_config({"results_dir": str(res), "run_name": "shared", "heads": 1, "head_dim": 4,
                             "pattern": "causal", "variants": ["full", "causal"], "seq_len": seq_lens,
                             "mode": modes, "device": "cpu"}, cuda_available=False)
    return expected_ids(plan)


@needs_joblib
@needs_submitit
def test_submitit_local_then_joblib_into_one_run_dir_one_row_each(launcher_env, capsys):
    res = launcher_env
    common = [f"results_dir={res}", "run_name=shared", "device=cpu", *TINY]
    # 2 jobs in 2 submitit processes (started together)
    code = cli.main(["sweep", "-m", "seq_len=8,16", "mode=fwd", "hydra/launcher=submitit_local", *common])
    out, err = capsys.readouterr()
    assert code == 0, err
    run = res / "shared"
    first = _expected(res, [8, 16], ["fwd"])
    assert {r["record_id"] for r in read_records(run)} == first
    assert (run / ".submitit").is_dir() and list(Path.cwd().iterdir()) == []
    # 4 jobs on 2 joblib workers; seq_len=16 fwd is already there and must not be measured again
    code = cli.main(["sweep", "-m", "seq_len=16,24", "mode=fwd,fwd_bwd", "hydra/launcher=joblib",
                     "hydra.launcher.n_jobs=2", *common])
    out, err = capsys.readouterr()
    assert code == 0, err
    expected = first | _expected(res, [16, 24], ["fwd", "fwd_bwd"])
    rows = read_records(run)
    ids = [r["record_id"] for r in rows]
    assert len(ids) == len(set(ids)) == len(expected) == 10
    assert set(ids) == expected
    df = pd.read_csv(run / "results.csv")
    assert len(df) == 10 and df["record_id"].is_unique and set(df["status"]) == {"ok"}
    assert sorted(df.groupby(["seq_len", "mode"]).size().items()) == [
        ((8, "fwd"), 2), ((16, "fwd"), 2), ((16, "fwd_bwd"), 2), ((24, "fwd"), 2), ((24, "fwd_bwd"), 2)]
    for n in range(4):  # every job of the second grid left its env.json with its own config
        assert json.loads((run / "jobs" / str(n) / "env.json").read_text())["config"]["seq_len"] in (16, 24)
    assert not list((run / MARKER_DIR).glob("*.json"))  # every job removed its marker
    with capsys.disabled():
        print(f"\n[launchers] rows expected {len(expected)}, written {len(rows)} (submitit_local 2 jobs, "
              f"joblib 4 jobs / 2 workers, 2 records resumed)")


@needs_submitit
def test_slurm_gpu_preset_composes_to_one_gpu_per_job(tmp_path, monkeypatch):
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    import configs

    configs.register()
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="configs", version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm_gpu", "hydra.launcher.partition=a100",
                                           "hydra.launcher.timeout_min=90"], return_hydra_config=True)
    GlobalHydra.instance().clear()
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.gpus_per_node, launcher.tasks_per_node, launcher.nodes) == (1, 1, 1)
    assert (launcher.partition, launcher.timeout_min) == ("a100", 90)

    # what submitit would hand to sbatch for these settings (a fake srun: submitit only checks it exists)
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import OmegaConf

    bindir = tmp_path / "bin"
    bindir.mkdir()
    srun = bindir / "srun"
    srun.write_text("#!/bin/sh\nexit 0\n")
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    params = OmegaConf.to_container(launcher, resolve=False)
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    params = {k if k in base else f"slurm_{k}": v for k, v in params.items()
              if k not in ("_target_", "submitit_folder", "max_num_timeout", "name")}
    ex = submitit.AutoExecutor(cluster="slurm", folder=tmp_path / "sub")
    ex.update_parameters(**params)
    text = ex._executor._make_submission_file_text("python -m x", "uid")
    for line in ("#SBATCH --gpus-per-node=1", "#SBATCH --ntasks-per-node=1", "#SBATCH --partition=a100",
                 "#SBATCH --time=90", "#SBATCH --nodes=1"):
        assert line in text, line


def test_build_grid_accepts_launcher_overrides():
    from harness.run.launch import build_grid

    grid = build_grid(["seq_len=8,16", "hydra/launcher=basic", "hydra.launcher._target_="
                       "hydra._internal.core_plugins.basic_launcher.BasicLauncher"], multirun=True,
                      cuda_available=False)
    assert grid.multirun and len(grid.plans) == 2


# ---------------------------------------------------------------------------------------------------- sharing
def _marker(run_dir: Path, name: str, **doc) -> Path:
    d = run_dir / MARKER_DIR
    d.mkdir(parents=True, exist_ok=True)
    p = d / name
    p.write_text(json.dumps(doc))
    return p


def test_parallel_job_on_the_same_cpu_is_counted_and_warned(tmp_path):
    import socket

    plan = plan_from_config({"seq_len": [8, 16], "heads": 1, "head_dim": 4, "budget": 0.005, "warmup": 0,
                             "min_runs": 1, "progress": "off", "variants": ["full"], "results_dir": str(tmp_path),
                             "run_name": "r"}, cuda_available=False)
    host = socket.gethostname()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _marker(plan.run_dir, "live.json", host=host, pid=other.pid, cores=cpu_cores(), gpus=[])
        dead = _marker(plan.run_dir, "dead.json", host=host, pid=2**22 + 12345, cores=cpu_cores(), gpus=[])
        _marker(plan.run_dir, "elsewhere.json", host=host + "-other", pid=other.pid, cores=cpu_cores(), gpus=[])
        _marker(plan.run_dir, "gpu.json", host=host, pid=other.pid, cores=[], gpus=["gpu:0"])
        with pytest.warns(SharedDeviceWarning, match=rf"1 other job\(s\) of this run \(pid {other.pid}\)"):
            run_sweep(plan)
    finally:
        other.kill()
        other.wait()
    rows = read_records(plan.run_dir)
    assert len(rows) == 2 and all(r["concurrent_jobs"] == 1 for r in rows)
    assert not dead.exists()  # a dead job's marker is cleaned up
    assert sorted(p.name for p in (plan.run_dir / MARKER_DIR).glob("*.json")) == ["elsewhere.json", "gpu.json",
                                                                                 "live.json"]


def test_alone_no_warning_and_disjoint_cores_do_not_share(tmp_path, recwarn):
    plan = plan_from_config({"seq_len": 8, "heads": 1, "head_dim": 4, "budget": 0.005, "warmup": 0, "min_runs": 1,
                             "progress": "off", "variants": ["full"], "results_dir": str(tmp_path),
                             "run_name": "r"}, cuda_available=False)
    run_sweep(plan)
    assert not [w for w in recwarn if issubclass(w.category, SharedDeviceWarning)]
    assert read_records(plan.run_dir)[0]["concurrent_jobs"] == 0
    mon = SharingMonitor(tmp_path / "m", ["cpu"])
    try:
        import socket

        _marker(tmp_path / "m", "x.json", host=socket.gethostname(), pid=os.getppid(),
                cores=[max(mon.cores) + 1000], gpus=["gpu:3"])
        assert mon.sharing("cpu") == []
        assert mon.sharing("cuda:0") == []  # gpu:0 (or a UUID) is not gpu:3
    finally:
        mon.close()
    assert not mon.path.exists()


def test_cuda_identity_follows_visible_devices(monkeypatch):
    import torch

    from harness.run.sharing import cuda_identity

    if torch.cuda.is_available():
        pytest.skip("with a GPU the identity is its UUID")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert cuda_identity("cuda") == "gpu:3" and cuda_identity("cuda:1") == "gpu:5"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.delenv("SLURM_STEP_GPUS", raising=False)
    monkeypatch.delenv("SLURM_JOB_GPUS", raising=False)
    assert cuda_identity("cuda:2") == "gpu:2"
    assert "its own device" in sharing_warning("cuda:0", [1, 2])

"""Adding a variant from outside: entry-point plugins, local files, the conformance kit, `attnbench check`,
the pytest-benchmark suite and its JSON reader, and (slow) the plugin template installed into a fresh venv."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
import textwrap
import venv
import warnings
from pathlib import Path

import pytest
import torch

from harness import Case, Pattern, Variant, get_variant, list_variants
from harness.cli.check import check_main
from harness.core import registry
from harness.core.registry import (
    PluginWarning,
    load_variants_from,
    plugins,
    register_variant,
    unregister_variant,
    variant_origin,
)
from harness.store.pytest_bench import PUBLIC_COLUMNS, is_pytest_benchmark_json, load_pytest_benchmark_json
from harness.testing import assert_conforms, check_case

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "examples" / "plugin_template"
_PREFIXES = ("attnbench_tp_", "attnbench_local_")

#: A correct variant in a dozen lines, used as plugin and local-file source; NAME is replaced per test.
GOOD_SOURCE = '''
import math
import torch
from harness import Variant, register_variant

@register_variant
class Good(Variant):
    name = "NAME"
    description = "test plugin: plain full attention"

    def forward(self, q, k, v, pattern):
        s = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
        return torch.matmul(torch.softmax(s, dim=-1), v)
'''


@pytest.fixture
def fresh_registry(monkeypatch):
    """The registry as if no plugin had been read yet; everything (built-ins, sys.modules) restored afterwards."""
    registry.load_builtins()
    saved = (dict(registry._variants), dict(registry._origins), list(registry._plugins), dict(registry._from_cache))
    monkeypatch.setattr(registry, "_loaded", False)
    registry._plugins.clear()
    yield registry
    for store, old in zip((registry._variants, registry._origins, registry._plugins, registry._from_cache), saved):
        store.clear()
        store.update(old) if isinstance(store, dict) else store.extend(old)
    for mod in [m for m in sys.modules if m.startswith(_PREFIXES)]:
        del sys.modules[mod]


def make_plugin(where: Path, dist: str, module: str, source: str, value: str | None = None) -> None:
    """Write ``module.py`` and a ``<dist>-0.1.dist-info`` declaring it in ``attnbench.variants`` (no pip)."""
    (where / f"{module}.py").write_text(textwrap.dedent(source))
    info = where / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[attnbench.variants]\n{module} = {value or module}\n")


def _case(**kw) -> Case:
    return Case(**{"batch": 1, "heads": 2, "seq_len": 33, "head_dim": 16, "mode": "fwd_bwd", "seed": 1, **kw})


# ----------------------------------------------------------------------------------------------- entry points
def test_entry_point_plugin_is_listed_and_works(tmp_path, monkeypatch, fresh_registry):
    make_plugin(tmp_path, "attnbench-tp-good", "attnbench_tp_good", GOOD_SOURCE.replace("NAME", "tp_good"))
    # an entry point may also name an undecorated Variant subclass: it is registered for the plugin
    make_plugin(tmp_path, "attnbench-tp-cls", "attnbench_tp_cls",
                GOOD_SOURCE.replace("@register_variant", "").replace("NAME", "tp_cls"),
                value="attnbench_tp_cls:Good")
    # a plugin module the user imported before attnbench read its plugins is still credited to the plugin
    make_plugin(tmp_path, "attnbench-tp-early", "attnbench_tp_early", GOOD_SOURCE.replace("NAME", "tp_early"))
    monkeypatch.syspath_prepend(str(tmp_path))
    __import__("attnbench_tp_early")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginWarning)
        names = list_variants()
    assert {"full", "tp_good", "tp_cls", "tp_early"} <= set(names)
    assert variant_origin("tp_early") == "plugin attnbench-tp-early 0.1"
    assert list_variants("tp_*") == ["tp_cls", "tp_early", "tp_good"]
    assert variant_origin("tp_good") == "plugin attnbench-tp-good 0.1"
    assert variant_origin("full") == "built-in"
    recs = {r.name: r for r in plugins()}
    assert recs["attnbench_tp_good"].ok and recs["attnbench_tp_good"].variants == ["tp_good"]
    assert recs["attnbench_tp_cls"].variants == ["tp_cls"]
    result = check_case(get_variant("tp_good"), _case())
    assert result.status == "pass", result.describe()


def test_broken_and_duplicate_plugins_warn_and_the_rest_keeps_working(tmp_path, monkeypatch, fresh_registry):
    make_plugin(tmp_path, "attnbench-tp-broken", "attnbench_tp_broken",
                GOOD_SOURCE.replace("NAME", "tp_half_loaded") + "\nraise RuntimeError('boom at import')\n")
    make_plugin(tmp_path, "attnbench-tp-dup", "attnbench_tp_dup",
                GOOD_SOURCE.replace("NAME", "full") + GOOD_SOURCE.replace("Good", "Extra").replace("NAME", "tp_extra"))
    make_plugin(tmp_path, "attnbench-tp-fine", "attnbench_tp_fine", GOOD_SOURCE.replace("NAME", "tp_fine"))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.warns(PluginWarning) as caught:
        names = list_variants()
    messages = [str(w.message) for w in caught]
    broken = [m for m in messages if "attnbench_tp_broken" in m]
    assert len(broken) == 1, messages
    assert "attnbench-tp-broken 0.1" in broken[0] and "was not loaded: RuntimeError: boom at import" in broken[0]
    dup = [m for m in messages if "attnbench_tp_dup" in m]
    assert len(dup) == 1, messages
    assert "attnbench-tp-dup 0.1" in dup[0]
    assert "variant name 'full' is already registered by variants.full.Full (built-in)" in dup[0]
    # everything else keeps working: the built-in keeps its name, the other plugins and the dup's other variant load
    assert type(get_variant("full")).__module__ == "variants.full"
    assert {"full", "tp_fine", "tp_extra"} <= set(names)
    assert "tp_half_loaded" not in names, "a plugin that failed to import must leave nothing half-registered"
    recs = {r.name: r for r in plugins()}
    assert not recs["attnbench_tp_broken"].ok and recs["attnbench_tp_dup"].skipped == ["full"]
    assert check_case(get_variant("full"), _case(pattern=Pattern("causal"))).status == "pass"


def test_register_duplicate_outside_a_plugin_still_raises(fresh_registry):
    class Other(Variant):
        name = "full"
        description = "x"

    with pytest.raises(ValueError, match=r"variant name 'full' is already registered by variants\.full\.Full"):
        register_variant(Other)


# ----------------------------------------------------------------------------------------------- local files
def test_load_variants_from_file_and_module(tmp_path, monkeypatch, fresh_registry):
    path = tmp_path / "my_variant.py"
    path.write_text(GOOD_SOURCE.replace("NAME", "tp_local"))
    assert load_variants_from(str(path)) == ["tp_local"]
    assert load_variants_from(path) == ["tp_local"], "loading the same file again returns the same names"
    assert variant_origin("tp_local") == f"file {path.resolve()}"
    assert check_case(get_variant("tp_local"), _case()).status == "pass"

    (tmp_path / "attnbench_tp_mod.py").write_text(GOOD_SOURCE.replace("NAME", "tp_mod"))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_variants_from("attnbench_tp_mod") == ["tp_mod"]


@pytest.mark.parametrize(
    ("given", "content", "match"),
    [
        ("missing.py", None, r"variants_from='.*missing\.py': no such file \(.*missing\.py\)"),
        ("a_dir/", "dir", r"is not a \.py file \(allowed: a \.py file or a dotted module path\)"),
        ("raises.py", "x = 1 / 0\n", r"importing it failed: ZeroDivisionError: division by zero"),
        ("dup.py", GOOD_SOURCE.replace("NAME", "full"), r"importing it failed: ValueError: variant name 'full' is"),
        ("attnbench_tp_no_such_module", None, r"no module named 'attnbench_tp_no_such_module' on sys\.path"),
        ("not a module!", None, r"'not a module!' is neither a \.py file nor a dotted module path"),
    ],
)
def test_load_variants_from_bad_input_errors_clearly(tmp_path, fresh_registry, given, content, match):
    target = tmp_path / given
    if content == "dir":
        target.mkdir()
    elif content is not None:
        target.write_text(content)
    arg = str(target) if content is not None or given.endswith(".py") else given
    before = list_variants()
    with pytest.raises(ValueError, match=match):
        load_variants_from(arg)
    assert list_variants() == before


def test_half_imported_file_registers_nothing(tmp_path, fresh_registry):
    path = tmp_path / "half.py"
    path.write_text(GOOD_SOURCE.replace("NAME", "tp_half") + "\nraise ImportError('needs a package')\n")
    with pytest.raises(ValueError, match="ImportError: needs a package"):
        load_variants_from(str(path))
    assert "tp_half" not in list_variants()


# ----------------------------------------------------------------------------------------------- the kit
def _reference_math(q, k, v, scale):
    return torch.matmul(torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * scale, dim=-1), v)


class NoScale(Variant):
    """Forgets the 1/sqrt(d) scale."""

    name = "tp_noscale"
    description = "broken: no 1/sqrt(d)"

    def forward(self, q, k, v, pattern):
        return _reference_math(q, k, v, 1.0)


class HalfGrad(Variant):
    """Right forward, gradients halved: a wrong backward."""

    name = "tp_halfgrad"
    description = "broken: gradients halved"

    def forward(self, q, k, v, pattern):
        y = _reference_math(q, k, v, 1.0 / math.sqrt(q.shape[-1]))
        return y.detach() + 0.5 * (y - y.detach())


class Clobbers(Variant):
    """Right output, but overwrites v."""

    name = "tp_clobbers"
    description = "broken: writes into its input"
    supports_backward = False

    def forward(self, q, k, v, pattern):
        out = _reference_math(q, k, v, 1.0 / math.sqrt(q.shape[-1]))
        v.zero_()
        return out


class SilentlyWrongPattern(Variant):
    """Declares causal but ignores the mask."""

    name = "tp_ignores_mask"
    description = "broken: declares causal, computes full"
    patterns = frozenset({"full", "causal"})

    def forward(self, q, k, v, pattern):
        return _reference_math(q, k, v, 1.0 / math.sqrt(q.shape[-1]))


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        (NoScale(), r"tp_noscale \[cpu float32 B2 H2 N67 D32 full fwd_bwd\] fail: output rel_l2 [\d.]+ > tolerance "
                    r"2e-05 \([\d.e+]+x; max abs err [\d.]+\)"),
        (HalfGrad(), r"tp_halfgrad \[cpu float32 B2 H2 N67 D32 full fwd_bwd\] fail: dq rel_l2 0\.5 > tolerance "
                     r"0\.0001 \(5e\+03x"),
        (Clobbers(), r"tp_clobbers \[cpu float32 B1 H3 N130 D64 full fwd\] fail: the variant modified its inputs"),
        (SilentlyWrongPattern(), r"tp_ignores_mask \[cpu float32 B2 H2 N67 D32 causal fwd_bwd\] fail: output rel_l2"),
    ],
    ids=lambda x: x.name if isinstance(x, Variant) else "",
)
def test_kit_catches_broken_variants_naming_case_and_figures(variant, expected):
    with pytest.raises(AssertionError, match=expected) as info:
        assert_conforms(variant, devices=["cpu"], dtypes=["float32"])
    assert f"variant {variant.name!r}:" in str(info.value) and "conformance cases failed" in str(info.value)


def test_kit_declines_what_a_variant_does_not_support():
    """(That ``full`` passes the kit is shown by tests/test_conformance.py and the check_main test below.)"""

    class OnlyFull(Variant):
        name = "tp_only_full"
        description = "x"

        def forward(self, q, k, v, pattern):
            return _reference_math(q, k, v, 1.0 / math.sqrt(q.shape[-1]))

    results = assert_conforms(OnlyFull(), devices=["cpu"], dtypes=["float32"])
    declined = [r for r in results if r.status == "unsupported"]
    assert declined and all(r.reasons and r.reasons[0].startswith(("pattern=", "kv_heads=", "q_len=", "layout="))
                            for r in declined)
    # nor documents of a variable-length batch (packed or padded)
    documents = [r for r in declined if r.case.layout and r.case.pattern.kind == "full" and not r.case.is_grouped]
    assert documents and all("doc_layouts is empty" in r.reasons[0] for r in documents)
    # a plugin that declares nothing about grouped heads or short queries is declined there, with the reason
    grouped = [r for r in declined if r.case.is_grouped and r.case.pattern.kind == "full"]
    assert grouped and all("supports_gqa = False" in r.reasons[0] for r in grouped)


# ----------------------------------------------------------------------------------------------- attnbench check
def test_check_main_prints_a_table_and_exit_codes(tmp_path, fresh_registry):
    out = io.StringIO()
    assert check_main(["full", "--dtype", "float32", "--device", "cpu"], out=out) == 0
    text = out.getvalue()
    header = text.splitlines()[0].split()
    assert header[:7] == ["variant", "device", "dtype", "BxHxNxD", "pattern", "mode", "status"]
    assert "out_rel_l2" in header and "grad_rel_l2" in header
    rows = [line for line in text.splitlines() if line.startswith("full ")]
    # 24 square MHA cases, 30 grouped or short, 60 variable-length batches (5 sets of documents x 2 layouts)
    assert len(rows) == 114 and all(" pass " in r for r in rows)
    assert any(" 2x4kv2x97q1x32 " in r for r in rows) and any(" 4x2x130x32/padded " in r for r in rows)
    assert "full: 114 cases: 114 pass, 0 fail, 0 error, 0 unsupported -> OK" in text

    broken = tmp_path / "broken_variant.py"
    broken.write_text(GOOD_SOURCE.replace("NAME", "tp_cli_noscale").replace(" / math.sqrt(q.shape[-1])", ""))
    out = io.StringIO()
    assert check_main(["tp_cli_noscale", "--from", str(broken), "--dtype", "float32", "--failures-only"],
                      out=out) == 1
    text = out.getvalue()
    assert "what failed, and by how much:" in text and "output rel_l2" in text and "-> FAILED" in text
    assert "[cpu float32 B1 H3 N130 D64 full fwd_bwd]" in text

    assert check_main(["no_such_variant"], out=io.StringIO()) == 2
    assert check_main(["full", "--dtype", "int8"], out=io.StringIO()) == 2


# ----------------------------------------------------------------------------------------------- pytest-benchmark
def _run_pytest(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "pytest", *args, "-p", "no:cacheprovider", "-q"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=240)


def test_benchmark_suite_json_loads_into_csv_rows(tmp_path):
    js = tmp_path / "bench.json"
    proc = _run_pytest(["benchmarks/test_variants.py", "--benchmark-only", f"--benchmark-json={js}",
                        "-k", "[full-cpu-float32-B1H4N256", "--benchmark-min-rounds=3",
                        "--benchmark-max-time=0.001"], tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert is_pytest_benchmark_json(js)
    df = load_pytest_benchmark_json(js)
    assert list(df.columns[: len(PUBLIC_COLUMNS)]) == list(PUBLIC_COLUMNS)
    assert len(df) == 2 and set(df["variant"]) == {"full"} and set(df["pattern"]) == {"full", "causal"}
    assert set(df["status"]) == {"ok"} and set(df["seq_len"]) == {256} and set(df["source"]) == {"pytest-benchmark"}
    raw = {b["extra_info"]["pattern"]: b["stats"] for b in json.loads(js.read_text())["benchmarks"]}
    for _, row in df.iterrows():
        stats = raw[row["pattern"]]
        assert row["time_ms_median"] == pytest.approx(stats["median"] * 1e3)
        assert row["time_ms_min"] == pytest.approx(stats["min"] * 1e3) and row["n_runs"] == stats["rounds"] >= 3
        assert row["time_ms_min"] <= row["time_ms_median"] and row["time_ms_iqr"] >= 0
        assert row["flops"] == 4 * 4 * 64 * Pattern(row["pattern"]).attended_pairs(256)
        assert row["tflops"] > 0 and row["err_rel_l2"] < 1e-5 and len(row["git_commit"]) in (0, 40)
    # `attnbench report` reads the same JSON into the usual tables and plots
    from harness.report.build import report_main

    out = tmp_path / "rep"
    assert report_main([str(js), "--out", str(out), "--wait"]) == 0
    import pandas as pd

    table = pd.read_csv(out / "results.csv")
    assert len(table) == 2 and set(table["variant"]) == {"full"}
    assert (out / "plots" / "time.png").is_file() and "full" in (out / "report.md").read_text()


def test_benchmark_suite_is_skipped_without_benchmark_only():
    """benchmarks/conftest.py marks every benchmark skipped unless --benchmark-only is given."""
    from benchmarks.conftest import pytest_collection_modifyitems

    class Config:
        def __init__(self, only):
            self.only = only
            self.pluginmanager = self

        def hasplugin(self, name):
            return name == "benchmark"

        def getoption(self, name, default=None):
            return self.only if name == "benchmark_only" else default

    class Item:
        nodeid = "benchmarks/test_variants.py::test_variant[full-cpu]"

        def __init__(self):
            self.marks = []

        def add_marker(self, mark):
            self.marks.append(mark)

    timed, plain = Item(), Item()
    pytest_collection_modifyitems(Config(only=True), [timed])
    pytest_collection_modifyitems(Config(only=False), [plain])
    assert timed.marks == []
    assert [m.name for m in plain.marks] == ["skip"]
    assert "pytest benchmarks --benchmark-only" in plain.marks[0].kwargs["reason"]


def test_pytest_benchmark_reader_rejects_other_files(tmp_path):
    with pytest.raises(ValueError, match=r"no such file \(expected pytest-benchmark's --benchmark-json output\)"):
        load_pytest_benchmark_json(tmp_path / "nope.json")
    other = tmp_path / "other.json"
    other.write_text('{"rows": []}')
    assert not is_pytest_benchmark_json(other)
    with pytest.raises(ValueError, match=r"is not pytest-benchmark output \(expected a JSON object with a "):
        load_pytest_benchmark_json(other)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="is not valid JSON"):
        load_pytest_benchmark_json(tmp_path / "bad.json")


# ----------------------------------------------------------------------------------------------- the template
def test_template_variant_is_short_and_loads_from_its_file(fresh_registry):
    module = TEMPLATE / "attnbench_plugin_template.py"
    assert len(module.read_text().splitlines()) < 30
    pyproject = (TEMPLATE / "pyproject.toml").read_text()
    assert '[project.entry-points."attnbench.variants"]' in pyproject
    assert 'example_query_chunked = "attnbench_plugin_template"' in pyproject
    assert load_variants_from(str(module)) == ["example_query_chunked"]
    var = get_variant("example_query_chunked")
    for pattern in (Pattern("causal"), Pattern("window_sym", window=5)):
        result = check_case(var, _case(seq_len=150, pattern=pattern))  # 150 rows: 3 chunks, the last partial
        assert result.status == "pass", result.describe()
    unregister_variant("example_query_chunked")


def _pip_can_target_other_pythons() -> bool:
    """Whether this interpreter's pip is 22.3 or newer. Read from its metadata, never by importing pip: an imported
    pip turns setuptools' distutils shim off for the rest of the process, and a later import of
    ``torch.utils.benchmark`` (the ``blocked_autorange`` timer) then failed on setuptools' assertion about
    ``distutils/core.py`` in whichever test came next."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        pip_version = version("pip")
    except PackageNotFoundError:
        return False
    return tuple(int(x) for x in pip_version.split(".")[:2]) >= (22, 3)


@pytest.fixture(scope="module")
def plugin_venv(tmp_path_factory):
    """A fresh venv (no system site-packages) with torch, attnbench (editable) and the template installed.

    This interpreter's pip installs into it (``pip --python``, no bytecode compilation): much faster than
    bootstrapping pip into the venv. torch comes from the local wheel; attnbench's other dependencies from the index.
    """
    where = tmp_path_factory.mktemp("venv") / "env"
    outer_pip = _pip_can_target_other_pythons()
    venv.create(where, with_pip=not outer_pip, system_site_packages=False)
    bindir = where / ("Scripts" if os.name == "nt" else "bin")
    py = bindir / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    pip_cmd = [sys.executable, "-m", "pip", "--python", str(py)] if outer_pip else [str(py), "-m", "pip"]

    def pip(*args: str) -> None:
        proc = subprocess.run([*pip_cmd, "install", "-q", "--no-compile", *args], env=env, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, f"pip install {' '.join(args)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}"

    pip(f"torch=={torch.__version__.split('+')[0]}", "setuptools>=64", "wheel", "pytest")
    pip("--no-build-isolation", "-e", str(ROOT))
    pip("--no-build-isolation", str(TEMPLATE))
    return {"python": py, "bin": bindir, "env": env}


def _in_venv(v: dict, args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=v["env"], capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_template_installed_in_fresh_venv_passes_its_own_tests(plugin_venv, tmp_path):
    code = ("import harness, attnbench_plugin_template as t; from harness.core.registry import list_variants, plugins, "
            "variant_origin; print(list_variants()); print(variant_origin('example_query_chunked')); "
            "print([(p.name, p.ok) for p in plugins()]); print(harness.__file__); print(t.__file__)")
    proc = _in_venv(plugin_venv, [str(plugin_venv["python"]), "-c", code], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    names, origin, recs, harness_file, module_file = proc.stdout.strip().splitlines()[-5:]
    assert "'example_query_chunked'" in names and "'full'" in names
    assert origin == "plugin attnbench-plugin-template 0.1.0"
    assert recs == "[('example_query_chunked', True)]"
    assert Path(harness_file).is_relative_to(ROOT), "attnbench must come from the editable install of this tree"
    assert Path(module_file).is_relative_to(Path(plugin_venv["python"]).parents[1]), "the template must be installed"
    # the venv's pytest script (not `python -m`, which would import the module from the template folder)
    proc = _in_venv(plugin_venv, [str(plugin_venv["bin"] / "pytest"), "-q", "-p", "no:cacheprovider"], TEMPLATE)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "1 passed" in proc.stdout


@pytest.mark.slow
def test_attnbench_list_in_fresh_venv_shows_the_plugin(plugin_venv, tmp_path):
    proc = _in_venv(plugin_venv, [str(plugin_venv["bin"] / "attnbench"), "list"], tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "example_query_chunked" in proc.stdout and "full" in proc.stdout


@pytest.mark.slow
def test_plugin_is_swept_and_reported_in_fresh_venv(plugin_venv, tmp_path):
    attnbench = str(plugin_venv["bin"] / "attnbench")
    results = tmp_path / "results"
    proc = _in_venv(plugin_venv, [attnbench, "sweep", "variants=[full,example_query_chunked]", "seq_len=96", "heads=1",
                                  "batch=1", "head_dim=16", f"results_dir={results}", "run_name=plugin_run"], tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    csvs = sorted(results.rglob("results.csv"))
    assert csvs, f"the sweep wrote no CSV under {results}: {proc.stdout[-2000:]}"
    import pandas as pd

    rows = pd.concat([pd.read_csv(c) for c in csvs])
    mine = rows[rows["variant"] == "example_query_chunked"]
    assert len(mine) and set(mine["status"]) == {"ok"}, rows[["variant", "status", "reason"]].to_string()
    run_dir = results / "plugin_run"
    import shutil

    shutil.rmtree(run_dir / "report", ignore_errors=True)  # the sweep's own report: this checks the command's
    proc = _in_venv(plugin_venv, [attnbench, "report", str(run_dir), "--no-plots"], tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # where the report writes (not results.csv, which names the variant whatever the report does)
    report_md = (run_dir / "report" / "report.md").read_text()
    assert "`example_query_chunked`" in report_md, report_md[:2000]
    summary = pd.read_csv(run_dir / "report" / "summary.csv")
    statuses = summary.loc[summary["variant"] == "example_query_chunked", "status"]
    measured = pd.read_csv(run_dir / "results.csv")["variant"].eq("example_query_chunked").sum()
    assert len(statuses) == measured and set(statuses) == {"ok"}, summary[["variant", "status"]].to_string()

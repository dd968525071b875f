"""The declared plugin API: the names harness exports (pinned), their stability promises, and the old paths."""

from __future__ import annotations

import ast
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import harness
import harness.report
from harness import Variant, register_variant
from harness.core.registry import unregister_variant

ROOT = Path(__file__).resolve().parents[1]

#: The plugin API. A change here is a change of the public surface: docs/plugins.md's table changes with it.
PLUGIN_API = ["AttentionFn", "Case", "PATTERN_KINDS", "Pattern", "Variant", "__version__", "case_for", "check_param",
              "fold_groups", "get_variant", "list_variants", "register_variant", "unfold_groups"]
ANALYSIS_API = ["compare_runs", "load_results", "write_report"]


def test_harness_exports_exactly_the_plugin_api():
    assert sorted(harness.__all__) == sorted(PLUGIN_API)
    for name in PLUGIN_API:
        assert getattr(harness, name) is not None
    assert "assert_conforms" in __import__("harness.testing").testing.__all__


def test_analysis_has_its_own_home():
    assert sorted(harness.report.__all__) == ANALYSIS_API
    for name in ANALYSIS_API:
        assert callable(getattr(harness.report, name))


def test_docs_list_every_api_name():
    text = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    table = text[text.index("## The plugin API"):]
    for name in PLUGIN_API:
        if name != "__version__":
            assert f"`{name}" in table, name


def test_import_harness_loads_no_torch():
    code = "import sys, harness; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_every_harness_module_declares_all():
    missing = []
    for path in sorted((ROOT / "harness").rglob("*.py")):
        if path.name in ("__init__.py", "__main__.py") and len(path.read_text(encoding="utf-8")) < 2000:
            continue  # a package's face: a docstring (and lazy exports, which declare __all__ when they have any)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if not any(isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in n.targets)
                   for n in tree.body):
            missing.append(str(path.relative_to(ROOT)))
    assert missing == []


def test_old_names_still_work_and_say_where_they_went():
    with pytest.warns(DeprecationWarning, match="harness.make_inputs is deprecated: import it from harness.inputs"):
        make_inputs = harness.make_inputs
    from harness.inputs.make import make_inputs as real

    assert make_inputs is real
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        harness.nope  # noqa: B018


def test_a_plugin_written_against_the_old_module_paths_still_loads(tmp_path):
    """A plugin importing harness.pattern / harness.variant / harness.inputs (the paths before the subpackages)
    registers and runs, with a DeprecationWarning naming the new path."""
    from harness.core.registry import load_variants_from

    plugin = tmp_path / "old_style_plugin.py"
    plugin.write_text(
        "import torch\n"
        "from harness.pattern import PATTERN_KINDS\n"
        "from harness.variant import case_for\n"
        "from harness.inputs import Case\n"
        "from harness import Variant, register_variant\n"
        "@register_variant\n"
        "class OldStyle(Variant):\n"
        "    name = 'old_style_plugin'\n"
        "    patterns = frozenset({'full'})\n"
        "    def forward(self, q, k, v, pattern):\n"
        "        assert isinstance(case_for(q, pattern, k=k), Case) and 'full' in PATTERN_KINDS\n"
        "        return torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, -1) @ v\n")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        names = load_variants_from(plugin)
    try:
        assert names == ["old_style_plugin"]
        said = " ".join(str(w.message) for w in seen if issubclass(w.category, DeprecationWarning))
        assert "harness.pattern is deprecated: import from harness.core.pattern" in said
        assert "harness.inputs.Case is deprecated" in said
        from harness.testing import assert_conforms

        assert_conforms("old_style_plugin", devices=("cpu",), dtypes=("float32",))
    finally:
        unregister_variant("old_style_plugin")


def test_tolerances_are_read_only_and_each_variant_has_its_own():
    with pytest.raises(TypeError):
        Variant.tolerances["float32"] = 1.0  # type: ignore[index]

    @register_variant
    class Loose(Variant):
        name = "test_loose_tolerances"
        tolerances = {"float32": 0.5}

        def forward(self, q, k, v, pattern):
            return q

    try:
        assert Loose.tolerances["float32"] == 0.5 and Variant.tolerances["float32"] == 2e-5
        with pytest.raises(TypeError):
            Loose.tolerances["float32"] = 9.0  # type: ignore[index]
        assert Loose().tolerance("float32") == 0.5 and Loose().tolerance("float16") == 0.5  # the table's largest
    finally:
        unregister_variant("test_loose_tolerances")

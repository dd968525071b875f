"""``attnbench ab``: two versions of a variant in one process, side by side, judged by the paired ratio."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.cli.ab import ab_main
from harness.core.registry import get_variant, unregister_variant
from harness.run.ab import judge_ratio, load_side

_PLUGIN = """
from harness import Variant, get_variant, register_variant

CALLS = {calls}


@register_variant
class Mine(Variant):
    name = "mine"
    patterns = frozenset({{"full"}})
    supports_backward = False

    def prepare(self, pattern, case):
        fn = get_variant("full").prepare(pattern, case)

        def call(q, k, v):
            for _ in range(CALLS - 1):
                fn(q, k, v)
            return fn(q, k, v)

        return call

    def forward(self, q, k, v, pattern):
        return get_variant("full")(q, k, v, pattern)
"""
TINY = ["pattern=full", "seq_len=[256]", "heads=2", "head_dim=32", "threads=1", "budget=0.2", "device=cpu"]


@pytest.fixture
def sides(tmp_path):
    a, b = tmp_path / "a" / "mine.py", tmp_path / "b" / "mine.py"
    for path, calls in ((a, 2), (b, 3)):
        path.parent.mkdir()
        path.write_text(_PLUGIN.format(calls=calls))
    yield a, b
    for name in ("mine.A", "mine.B"):
        unregister_variant(name)


@pytest.mark.parametrize("ratio,low,high,want", [
    (1.25, 1.20, 1.30, "slower"), (0.8, 0.75, 0.85, "faster"), (1.01, 0.99, 1.03, "same"),
    (1.04, 0.98, 1.10, "unsure"), (float("nan"), 1, 1, "unsure"), (1.06, 1.01, 1.11, "slower"),
    (1.03, 1.01, 1.05, "same")])
def test_the_verdict_reads_the_paired_interval(ratio, low, high, want):
    assert judge_ratio(ratio, low, high, 0.05) == want


def test_two_versions_of_one_variant_live_side_by_side(sides, tmp_path):
    a, b = sides
    assert load_side(str(a), "A", ".A", tmp_path) == ["mine"]
    assert load_side(str(b), "B", ".B", tmp_path) == ["mine"]
    assert get_variant("mine.A").name == "mine.A" and get_variant("mine.B").name == "mine.B"
    assert type(get_variant("mine.A")).__module__ != type(get_variant("mine.B")).__module__


def test_ab_catches_a_slower_b_and_says_so(sides, capsys):
    a, b = sides
    assert ab_main([str(a), str(b), *TINY]) == 1
    out = capsys.readouterr().out
    assert "slower  mine" in out and "FAILED: B is slower than A in 1 case(s)" in out
    ratio = float(out.split(" x")[1].split(" ")[0])
    assert 1.3 < ratio < 1.7  # three calls against two, overheads included


def test_ab_of_the_same_file_twice_is_same_or_unsure_never_slower(sides, capsys, tmp_path):
    a, _ = sides
    copy = tmp_path / "copy" / "mine.py"
    copy.parent.mkdir()
    copy.write_text(a.read_text())
    code = ab_main([str(a), str(copy), *TINY, "--out", str(tmp_path / "ab.csv")])
    out = capsys.readouterr().out
    assert code in (0, 3) and "slower  mine" not in out and "faster  mine" not in out, out
    assert (tmp_path / "ab.csv").read_text().startswith("variant,case,ratio,low,high,pairs")


def test_a_side_at_a_git_ref(tmp_path, capsys):
    repo = tmp_path / "repo"
    repo.mkdir()

    def git(*args):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                       env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                            "GIT_COMMITTER_EMAIL": "t@t", "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})

    git("init", "-q")
    (repo / "mine.py").write_text(_PLUGIN.format(calls=2))
    git("add", "mine.py")
    git("commit", "-qm", "v1")
    (repo / "mine.py").write_text(_PLUGIN.format(calls=3))
    git("commit", "-qam", "v2")
    try:
        assert ab_main([f"git:{repo}@HEAD~1:mine.py", f"git:{repo}@HEAD:mine.py", *TINY]) == 1
        assert "slower  mine" in capsys.readouterr().out
    finally:
        for name in ("mine.A", "mine.B"):
            unregister_variant(name)


@pytest.mark.parametrize("args,says", [
    (["nope.py", "nope2.py"], "A='nope.py': no such file"),
    (["git:HEAD", "x.py"], "is not a git side (allowed: git:REF:path/in/repo.py"),
    (["git:no-such-ref-xyz:mine.py", "x.py"], "git could not read mine.py at no-such-ref-xyz"),
])
def test_bad_sides_are_clear_errors(args, says, capsys):
    assert ab_main(args + TINY) == 2
    assert says in capsys.readouterr().err


def test_sides_without_a_common_variant_are_refused(sides, tmp_path, capsys):
    a, _ = sides
    other = tmp_path / "other.py"
    other.write_text(_PLUGIN.format(calls=1).replace('"mine"', '"yours"'))
    try:
        assert ab_main([str(a), str(other), *TINY]) == 2
        assert "no variant in common" in capsys.readouterr().err
    finally:
        unregister_variant("yours.B")


def test_docs_name_the_command():
    assert "attnbench ab" in (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")

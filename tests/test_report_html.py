"""report.html: one file that opens offline, every value escaped, the figures inline, the history for several runs;
and the same page in a real headless Chromium (Debian's chromium and chromium-driver through Selenium): no
console error, the filters change the rows shown, a sort orders them, a plugin name holding markup shows as text,
a screenshot is taken.

Without Chromium the browser tests skip, saying what to install; in CI (``CI`` set) they fail instead, since
``.ci/run`` installs it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.history_steps import build_runs
from harness.report.build import build_report, write_plots
from harness.report.document import ReportTables
from harness.report.facets import facet_columns
from harness.report.html_page import CSS, SCRIPT, content_policy
from harness.report.html_report import write_report_html
from harness.report.scaling import scaling_table
from harness.report.summary import summary_table, with_baseline_ratios
from harness.store.reader import read_runs
from tests.report_fixtures import synthetic_rows, write_run

ROOT = Path(__file__).resolve().parents[1]
#: A plugin's variant name and message holding markup that would run if it were not escaped.
EVIL = '<img src=x onerror="document.body.dataset.pwned=1">'
EVIL_REASON = "<script>document.body.dataset.pwned=2</script> failed & <b>bold</b>"


def _screenshot_module():
    spec = importlib.util.spec_from_file_location("report_screenshot", ROOT / "scripts" / "report_screenshot.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


SHOT = _screenshot_module()


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """A report of synthetic rows (every status) in which one variant's name and one message hold markup."""
    tmp = tmp_path_factory.mktemp("html")
    rows = synthetic_rows()
    rows.loc[rows["variant"] == "brand_new_variant", "variant"] = EVIL
    rows.loc[rows["status"] == "error", "reason"] = EVIL_REASON
    run = write_run(tmp, "run_a", rows)
    build_report(read_runs([run]), tmp / "report")
    return tmp / "report" / "report.html"


@pytest.fixture(scope="module")
def history_report(tmp_path_factory) -> Path:
    """report.html of 30 synthetic runs with a code step (run 17) and a machine step (run 24); no report figures,
    the history's figures drawn."""
    tmp = tmp_path_factory.mktemp("html_history")
    build_runs(tmp / "runs")
    data = read_runs([tmp / "runs"])
    frame = with_baseline_ratios(data.frame)
    facets = facet_columns(frame)
    tables = ReportTables(frame, summary_table(frame), scaling_table(frame, facets), facets, {})
    return write_report_html(data, tables, tmp, figures={})


# ---------------------------------------------------------------------------------------------- the file
def test_values_are_escaped_and_only_the_page_script_runs(report):
    text = report.read_text(encoding="utf-8")
    assert text.count("<script") == 1 and f"<script>{SCRIPT}</script>" in text
    assert "<img src=x" not in text and "&lt;img src=x onerror=&quot;document.body.dataset.pwned=1&quot;&gt;" in text
    assert "&lt;script&gt;document.body.dataset.pwned=2&lt;/script&gt; failed &amp; &lt;b&gt;bold&lt;/b&gt;" in text
    assert f'content="{content_policy()}"' in text and f"<style>{CSS}</style>" in text


def test_nothing_is_fetched_and_the_figures_are_inline(report):
    text = report.read_text(encoding="utf-8")
    assert not re.search(r'(src|href)="(?!data:|#)', text), re.findall(r'(?:src|href)="[^"]{0,40}', text)[:5]
    figures = sorted(p.stem for p in (report.parent / "plots").glob("*.png"))
    assert text.count('src="data:image/svg+xml;base64,') == len(figures) > 3
    assert "default-src 'none'" in content_policy() and "img-src data:" in content_policy()


def test_every_failure_row_is_listed_with_its_whole_message(report):
    text = report.read_text(encoding="utf-8")
    failures = text[text.index('id="failures"'):text.index('id="figures"')]
    rows = pd.read_csv(report.parent / "results.csv")
    assert failures.count("<tr><td") == int((rows["status"] != "ok").sum())
    assert failures.count(">synthetic timeout</td>") == int((rows["status"] == "timeout").sum())


def test_the_page_says_the_figures_are_coming_until_they_are_drawn(tmp_path):
    data = read_runs([write_run(tmp_path, "small", synthetic_rows(heads=(4,), patterns=("full",)))])
    build_report(data, tmp_path, draw_plots=False)
    assert "being drawn by a background process" in (tmp_path / "report.html").read_text(encoding="utf-8")
    write_plots(data, tmp_path)
    text = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "being drawn" not in text and "data:image/svg+xml" in text


def test_the_history_view_comes_with_several_runs(history_report, report):
    text = history_report.read_text(encoding="utf-8")
    assert 'id="history"' in text and 'id="table-steps"' in text and "At step:5%: 2 step(s) up" in text
    assert text.count('src="data:image/svg+xml;base64,') == 2  # one figure per stepped case
    assert 'id="history"' not in report.read_text(encoding="utf-8")  # one run: no history


# ---------------------------------------------------------------------------------------------- in Chromium
@pytest.fixture
def browser():
    why = SHOT.missing()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"{why}: CI installs it in .ci/run ({SHOT.INSTALL})")
        pytest.skip(f"{why}; install with: {SHOT.INSTALL}")
    with tempfile.TemporaryDirectory() as profile:
        driver = SHOT.start_chromium(profile, 1400, 1000)
        try:
            yield driver
        finally:
            driver.quit()


def _open(driver, path: Path) -> None:
    driver.get(path.resolve().as_uri())
    SHOT.wait_for_images(driver)


def _visible_cells(driver, table: str, header: str) -> list[str]:
    """The ``data-v`` of the column titled ``header`` in the rows of ``table`` that are shown."""
    return driver.execute_script(
        "const t = document.getElementById(arguments[0]);"
        "const col = Array.from(t.tHead.rows[0].cells).findIndex(c => c.textContent === arguments[1]);"
        "return Array.from(t.tBodies[0].rows).filter(r => !r.hidden).map(r => r.cells[col].getAttribute('data-v'));",
        table, header)


def _choose(driver, table: str, label: str, value: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    bar = driver.find_element(By.CSS_SELECTOR, f'.filters[data-for="{table}"]')
    menu = next(m for m in bar.find_elements(By.TAG_NAME, "label") if m.text.split("\n")[0].startswith(label))
    Select(menu.find_element(By.TAG_NAME, "select")).select_by_value(value)


def _severe(driver) -> list[dict]:
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def test_the_report_in_chromium(browser, report, tmp_path):
    from selenium.webdriver.common.by import By

    _open(browser, report)
    assert _severe(browser) == []
    widths = browser.execute_script("return Array.from(document.images).map(i => i.naturalWidth)")
    assert len(widths) > 3 and min(widths) > 100  # every figure decoded
    n_rows = len(_visible_cells(browser, "table-results", "variant"))

    _choose(browser, "table-results", "variant", EVIL)  # the markup name is a menu value and a cell's text
    shown = _visible_cells(browser, "table-results", "variant")
    assert 0 < len(shown) < n_rows and set(shown) == {EVIL}
    cells = browser.find_elements(By.XPATH, "//table[@id='table-results']//tbody/tr[not(@hidden)]/td[@data-v]")
    assert EVIL in [c.text for c in cells]
    assert browser.execute_script("return document.body.dataset.pwned === undefined") is True
    bar = browser.find_element(By.CSS_SELECTOR, '.filters[data-for="table-results"] .shown')
    assert bar.text == f"{len(shown)} of {n_rows} rows shown"

    _choose(browser, "table-results", "variant", "")
    _choose(browser, "table-results", "status", "oom")
    assert set(_visible_cells(browser, "table-results", "status")) == {"oom"}
    _choose(browser, "table-results", "status", "")

    header = browser.find_element(By.XPATH, "//table[@id='table-results']//th[text()='time (ms)']")
    header.click()
    times = [float(v) for v in _visible_cells(browser, "table-results", "time (ms)") if v]
    assert len(times) > 10 and times == sorted(times) and header.get_attribute("aria-sort") == "ascending"
    header.click()
    times = [float(v) for v in _visible_cells(browser, "table-results", "time (ms)") if v]
    assert times == sorted(times, reverse=True)

    search = browser.find_element(By.CSS_SELECTOR, '.filters[data-for="table-failures"] input')
    search.send_keys("bold")  # in the error rows' message only
    errors = int((pd.read_csv(report.parent / "results.csv")["status"] == "error").sum())
    assert _visible_cells(browser, "table-failures", "status") == ["error"] * errors
    assert _severe(browser) == []
    shot = tmp_path / "report.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 20_000


def test_the_history_in_chromium(browser, history_report, tmp_path):
    _open(browser, history_report)
    assert _severe(browser) == []
    assert len(_visible_cells(browser, "table-steps", "cause")) == 8
    _choose(browser, "table-steps", "cause", "code")
    assert _visible_cells(browser, "table-steps", "run") == ["run17", "run17"]
    widths = browser.execute_script("return Array.from(document.images).map(i => i.naturalWidth)")
    assert len(widths) == 2 and min(widths) > 100
    shot = tmp_path / "history.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 20_000

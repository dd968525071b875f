"""Open a report.html in headless Chromium (Debian's ``chromium`` and ``chromium-driver``, through Selenium) and save
a screenshot; ``tests/test_report_browser.py`` starts the browser the same way (:func:`start_chromium`).

The browser runs offline: no background networking, no component updates, no sync, a fresh profile; the report
itself allows no network (its Content-Security-Policy).

    python scripts/report_screenshot.py results/RUN/report/report.html docs/img/report_html.png [--height 1800]
        [--at '#history']

Install the browser with ``apt-get install -y chromium chromium-driver``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["CHROMIUM", "CHROMIUM_FLAGS", "CHROMEDRIVER", "INSTALL", "missing", "start_chromium", "wait_for_images"]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL = "apt-get update && apt-get install -y chromium chromium-driver; pip install selenium"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars")


def missing() -> str:
    """What is missing to open a page in Chromium here ('' when nothing is)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).exists() or shutil.which(Path(path).name)):
            return f"{path} is not installed"
    return ""


def start_chromium(profile: str | Path, width: int = 1400, height: int = 1000):
    """A headless Chromium WebDriver with a fresh profile in ``profile``, its console log kept."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = CHROMEDRIVER if Path(CHROMEDRIVER).exists() else shutil.which("chromedriver")
    return webdriver.Chrome(service=Service(driver), options=opts)


def wait_for_images(driver, timeout: float = 20.0) -> None:
    """Wait until every image of the page is decoded (the figures are data: URIs)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if driver.execute_script("return Array.from(document.images).every(i => i.complete)"):
            return
        time.sleep(0.1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("html")
    p.add_argument("png")
    p.add_argument("--width", type=int, default=1400)
    p.add_argument("--height", type=int, default=1800)
    p.add_argument("--at", default="", help="scroll to this CSS selector first (e.g. '#history')")
    args = p.parse_args()
    why = missing()
    if why:
        print(f"report_screenshot: {why} (install: {INSTALL})", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as profile:
        drv = start_chromium(profile, args.width, args.height)
        try:
            drv.get(Path(args.html).resolve().as_uri())
            wait_for_images(drv)
            if args.at:
                drv.execute_script("document.querySelector(arguments[0]).scrollIntoView()", args.at)
            drv.save_screenshot(args.png)
            errors = [e for e in drv.get_log("browser") if e.get("level") == "SEVERE"]
        finally:
            drv.quit()
    print(f"{args.png}: console errors: {len(errors)}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

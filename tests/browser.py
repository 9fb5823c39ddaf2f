"""A real browser for the page tests: headless chromium through selenium + chromedriver (Debian's
chromium and chromium-driver, installed by .ci/run). `chrome()` skips in one line where they are missing."""
from __future__ import annotations

import shutil
import subprocess
import tarfile
from contextlib import contextmanager
from pathlib import Path

import pytest

VEGA = ("vega@5", "vega-lite@5", "vega-embed@6")


@contextmanager
def chrome():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium not installed (pip install -e '.[test]')")
    driver_path, browser = shutil.which("chromedriver"), shutil.which("chromium")
    if not driver_path or not browser:
        pytest.skip("chromium / chromedriver not installed (.ci/run: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.implicitly_wait(10)
    try:
        yield driver
    finally:
        driver.quit()


def js_errors(driver) -> list[str]:
    """The page's console errors (SEVERE: uncaught exceptions, failed scripts)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def vega_scripts(out: Path) -> Path:
    """vega, vega-lite and vega-embed from the npm registry into out/vendor, and a `dvc plots show`
    HTML template that loads them from there instead of a CDN."""
    vendor = out / "vendor"
    vendor.mkdir(parents=True, exist_ok=True)
    if not shutil.which("npm"):
        pytest.skip("npm not installed: cannot fetch vega for the DVC plots page")
    proc = subprocess.run(["npm", "pack", "--silent", *VEGA], cwd=vendor, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.skip(f"npm pack {' '.join(VEGA)} failed: {proc.stderr.strip().splitlines()[-1:]}")
    scripts = []
    for tgz in sorted(vendor.glob("*.tgz")):
        name = tgz.name.rsplit("-", 1)[0]
        with tarfile.open(tgz) as tar:
            member = tar.getmember(f"package/build/{name}.min.js")
            (vendor / f"{name}.min.js").write_bytes(tar.extractfile(member).read())
        scripts.append(f'<script src="vendor/{name}.min.js"></script>')
    order = {"vega": 0, "vega-lite": 1, "vega-embed": 2}
    scripts.sort(key=lambda s: order[s.split("vendor/")[1].split(".min")[0]])
    template = out.parent / "dvc_plots_template.html"
    template.write_text("<!DOCTYPE html>\n<html>\n<head>\n<title>DVC Plot</title>\n" + "\n".join(scripts)
                        + "\n</head>\n<body>\n{plot_divs}\n</body>\n</html>\n")
    return template

"""The demo report in a real browser: Debian's chromium through chromium-driver and Selenium, headless
and offline. No console error, no request leaves the file, every figure has its alt text, and the
page prints to PDF on A4 with every table inside the printable width.

The report comes from a small real run (``synth --patients 200`` then ``run``, the commands a site
types). Without chromium / chromium-driver / selenium the tests skip with the reason locally and fail
in CI (tests/conftest.py ``require_service``; .ci/run installs the browser).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

#: A4 in inches, and the printable width in CSS pixels with Chrome's default 0.4 in margins
A4 = (8.27, 11.69)
MARGIN_IN = 0.4
PRINTABLE_PX = int((A4[0] - 2 * MARGIN_IN) * 96)


def _browser() -> tuple[str | None, str | None, str]:
    """(chromium, chromedriver, why not) — the executables, or the reason the browser is unavailable."""
    chromium = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
    driver = shutil.which("chromedriver") or next(
        (p for p in ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver") if Path(p).is_file()), None
    )
    try:
        import selenium  # noqa: F401
    except ImportError:
        return chromium, driver, "selenium is not installed (pip install -e '.[dev]')"
    if not chromium or not driver:
        missing = "chromium / chromium-driver not installed (apt-get install chromium chromium-driver)"
        return chromium, driver, missing
    return chromium, driver, ""


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("leopard-etl")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "leopard_etl"]


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """report.html of a small real run: synth 200 patients as FHIR NDJSON, then run on them."""
    root = tmp_path_factory.mktemp("browser-demo")
    data, out = root / "D", root / "O"
    env = {**os.environ, "CI": "true"}  # plain log lines, no live progress in the captured output
    for args in (
        ["synth", "--patients", "200", "--seed", "3", "--format", "fhir-ndjson", "--out", str(data)],
        ["run", "--fhir", str(data), "--out", str(out)],
    ):
        done = subprocess.run([*_cli(), *args], capture_output=True, text=True, env=env, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
    return out / "report.html"


@pytest.fixture(scope="module")
def driver(require_service: Any) -> Iterator[Any]:
    chromium, chromedriver, why = _browser()
    require_service(not why, why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-extensions",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # offline: no host name resolves
        "--window-size=1200,900",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    browser = webdriver.Chrome(service=Service(executable_path=str(chromedriver)), options=options)
    try:
        browser.execute_cdp_cmd("Network.enable", {})
        browser.execute_cdp_cmd(  # and no network at all while the report is open
            "Network.emulateNetworkConditions",
            {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
        )
        yield browser
    finally:
        browser.quit()


@pytest.fixture(scope="module")
def opened(driver: Any, demo_report: Path) -> Any:
    driver.get_log("performance")  # drop what the browser did before the report
    driver.get_log("browser")
    driver.get(demo_report.as_uri())
    driver.execute_script("return document.readyState")
    return driver


def test_no_console_error(opened: Any) -> None:
    entries = opened.get_log("browser")
    errors = [e for e in entries if e.get("level") in ("SEVERE", "ERROR")]
    assert errors == [], errors
    # an error raised by a script would land here too: run one to prove the log is read
    opened.execute_script("console.error('probe')")
    assert any("probe" in e.get("message", "") for e in opened.get_log("browser"))


def test_no_request_leaves_the_file(opened: Any, demo_report: Path) -> None:
    requested: list[str] = []
    for entry in opened.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            requested.append(message["params"]["request"]["url"])
    assert demo_report.as_uri() in requested  # the log does record requests …
    outside = [u for u in requested if not (u.startswith("data:") or u == demo_report.as_uri())]
    assert outside == []  # … and the report asked for nothing else
    resources = opened.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert [r for r in resources if not r.startswith("data:")] == []
    # the detector sees a request that leaves the file (blocked: the browser is offline)
    opened.execute_script(
        "const i = document.createElement('img'); i.src = 'https://cdn.example.invalid/x.png';"
        "document.body.appendChild(i);"
    )
    opened.execute_script("return new Promise(r => setTimeout(r, 300))")
    seen = [
        json.loads(e["message"])["message"] for e in opened.get_log("performance")
    ]
    assert any(
        m.get("method") == "Network.requestWillBeSent"
        and m["params"]["request"]["url"] == "https://cdn.example.invalid/x.png"
        for m in seen
    )
    opened.refresh()  # the page as written again, for the next tests
    opened.get_log("browser")


def test_every_figure_has_its_alt_text(opened: Any) -> None:
    from selenium.webdriver.common.by import By

    images = opened.find_elements(By.TAG_NAME, "img")
    assert images, "the demo report has no figure"
    for img in images:
        alt = img.get_attribute("alt") or ""
        assert alt.startswith("Kaplan–Meier curves: ") and "groups drawn: " in alt, alt
        assert opened.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)
    drawn = opened.execute_script(
        "return [...document.querySelectorAll('figure[data-groups]')].map(f => f.dataset.groups)"
    )
    assert len(drawn) == len(images) and all(drawn)


def _print_layout(opened: Any) -> dict[str, Any]:
    """Lay the page out as it prints (print media, the printable width of A4) and list every element
    whose box passes the right edge of the page."""
    opened.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    opened.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": PRINTABLE_PX, "height": 1100, "deviceScaleFactor": 1, "mobile": False},
    )
    try:
        return dict(
            opened.execute_script(
                """
                const width = document.documentElement.clientWidth;
                const name = e => e.id || (typeof e.className === 'string' && e.className) || e.tagName;
                const wide = [...document.querySelectorAll('main *')]
                  .filter(e => e.getBoundingClientRect().right > width + 0.5)
                  .map(e => ({el: name(e), right: Math.round(e.getBoundingClientRect().right),
                              table: (e.closest('table') || {}).id || null}));
                const figures = [...document.querySelectorAll('figure img')]
                  .map(e => Math.round(e.getBoundingClientRect().right));
                return {width: width, page: document.documentElement.scrollWidth, wide: wide,
                        figures: figures};
                """
            )
        )
    finally:
        opened.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        opened.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})


def test_prints_to_pdf_on_a4(opened: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    layout = _print_layout(opened)
    assert layout["width"] <= PRINTABLE_PX
    assert layout["figures"] and all(right <= layout["width"] for right in layout["figures"])  # images scale
    pdf = opened.execute_cdp_cmd(
        "Page.printToPDF",
        {"paperWidth": A4[0], "paperHeight": A4[1], "printBackground": True,
         **{f"margin{side}": MARGIN_IN for side in ("Top", "Bottom", "Left", "Right")}},
    )
    data = base64.b64decode(pdf["data"])
    assert data.startswith(b"%PDF-") and data.count(b"/Type /Page") >= 2
    folder = tmp_path_factory.mktemp("pdf")
    (folder / "report.pdf").write_bytes(data)
    if shutil.which("pdftoppm"):  # the PDF renders (pdftoppm is poppler-utils; optional)
        subprocess.run(["pdftoppm", "-r", "40", "-png", "-f", "1", "-l", "1", str(folder / "report.pdf"),
                        str(folder / "page")], check=True, timeout=120)
        assert list(folder.glob("page*.png"))


def test_nothing_is_wider_than_a4(opened: Any) -> None:
    layout = _print_layout(opened)
    assert layout["wide"] == [], layout["wide"]  # no table (nor any other box) is cut at the page edge
    assert layout["page"] <= layout["width"]

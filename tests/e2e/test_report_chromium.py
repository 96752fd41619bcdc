"""The HTML report in a real browser: Debian's headless Chromium opens it without a single
console message (no script error, no blocked load, no refused style) and screenshots it.

Console messages are read from Chromium's own log (--enable-logging=stderr), which prints
every console message of the page, including Content-Security-Policy violations, as a
"CONSOLE" line: no DevTools client (and no extra dependency) is needed.  The detector is
checked against pages that do misbehave, so a silent browser cannot pass for a clean page.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from mirrorscope.cli import main
from mirrorscope.model import EndpointKey, Finding
from mirrorscope.store import AnalysisStore

CHROMIUM = Path("/usr/bin/chromium")
DEMO = Path(__file__).resolve().parents[2] / "pcaps" / "demo.pcap"
WIDTH, HEIGHT = 1280, 2000
# A 1280x2000 screenshot of a page with no content compresses to a few KB; the demo
# report (tables, charts, text) is well over 100 KB.
MIN_SCREENSHOT_BYTES = 50_000
_CONSOLE = re.compile(r":CONSOLE[(:\]]")

pytestmark = pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                                reason=f"{CHROMIUM} not installed (apt-get install chromium)")


def _chromium(page: Path, screenshot: Path) -> str:
    """Open page headless, write a screenshot; Chromium's log (stderr)."""
    with tempfile.TemporaryDirectory(prefix="ms-chromium-") as profile:
        result = subprocess.run(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", "--enable-logging=stderr",
             "--v=0", f"--screenshot={screenshot}", f"--window-size={WIDTH},{HEIGHT}",
             page.resolve().as_uri()],
            capture_output=True, text=True, timeout=120, check=False,
        )
    assert screenshot.exists(), f"no screenshot (exit {result.returncode}): {result.stderr}"
    return result.stderr


def console_messages(log: str) -> list[str]:
    """Every page console message (errors, warnings, CSP violations) in a Chromium log."""
    return [line for line in log.splitlines() if _CONSOLE.search(line)]


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of pcaps/demo.pcap, plus one finding made of hostile text."""
    root = tmp_path_factory.mktemp("report")
    url = f"sqlite:///{root / 'demo.db'}"
    runner = CliRunner()
    replay = runner.invoke(main, ["replay", str(DEMO), "--db", url, "--no-progress"])
    assert replay.exit_code == 0, replay.output
    hostile = EndpointKey('x"><img src=/x onerror=alert(1)>', "GET",
                          "/<script>alert(2)</script>/\"onerror=alert(3)")
    with AnalysisStore(url) as analysis:
        analysis.upsert_findings(1, [(Finding(
            kind="attack.xss", severity="critical", owasp="API8:2023", endpoint=hostile,
            client_ip="10.0.0.1", ts_first=1.0, ts_last=2.0,
            evidence={"payload": "<script>alert(4)</script>", "style": '<div style="c:r">'},
            remediation="Encode <b>it</b>."), 0.0)])
    out = root / "report.html"
    result = runner.invoke(main, ["report", "--db", url, "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_report_opens_without_console_messages_and_screenshots(demo_report: Path) -> None:
    screenshot = demo_report.with_suffix(".png")
    log = _chromium(demo_report, screenshot)
    assert console_messages(log) == []
    assert _png_size(screenshot) == (WIDTH, HEIGHT)
    assert screenshot.stat().st_size > MIN_SCREENSHOT_BYTES, screenshot.stat().st_size
    print(f"report screenshot: {screenshot}")


def test_console_check_catches_a_script_error(tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'><title>b</title></head>"
                    "<body><p>broken</p><script>notDefinedAnywhere();</script></body></html>")
    messages = console_messages(_chromium(page, tmp_path / "broken.png"))
    assert any("Uncaught" in m and "notDefinedAnywhere" in m for m in messages), messages


def test_report_policy_blocks_loads_scripts_and_foreign_styles(demo_report: Path,
                                                               tmp_path: Path) -> None:
    """Markup slipped into the report could neither fetch, run nor restyle: the browser
    refuses each, and each refusal is a console message the check sees."""
    injected = ('<img src="http://127.0.0.1:9/beacon.png"><script>document.title="x"</script>'
                '<div style="color:red">styled</div>')
    page = tmp_path / "tampered.html"
    page.write_text(demo_report.read_text().replace("</body>", injected + "</body>"))
    messages = console_messages(_chromium(page, tmp_path / "tampered.png"))
    assert any("beacon.png" in m for m in messages), messages
    assert any("script" in m.lower() and "Content Security Policy" in m for m in messages)
    assert any("style" in m.lower() and "Content Security Policy" in m for m in messages)

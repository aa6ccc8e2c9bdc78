"""``ttg dashboard`` in headless Chromium: it lists a running sweep, its progress
rises, a failing parameter shows in the error table with its message, the
results plot renders, cancel and retry ask first; off loopback it needs its
token. Screenshots go to test-artifacts/observability/."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.observability.browser import chromium, screenshot
from tests.processes import Procs, wait_until
from ttg.observe.dashboard.server import is_loopback, token_for
from ttg.testing import free_port

SWEEP = "surface"
#: How many distinct colours the results canvas shows (every 4th pixel).
COUNT_COLOURS = """() => {
    const c = document.querySelector('#plot canvas');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    const seen = new Set();
    for (let k = 0; k < d.length; k += 16) seen.add(d[k] + ',' + d[k + 1] + ',' + d[k + 2]);
    return seen.size;
}"""
TOTAL = 21 * 21


@dataclass
class Dash:
    url: str
    home: Path
    procs: Procs


@pytest.fixture
def dash(tmp_path: Path) -> Iterator[Dash]:
    home = tmp_path / ".ttg"
    procs = Procs(tmp_path / "logs")
    port = free_port()
    try:
        procs.start(home, "submit", "tests.observability.funcs:surface", "--grid", "a=linspace:0:1:21",
                    "--grid", "b=linspace:0:1:21", "--chunk-size", "10", "--name", SWEEP).wait(60)
        server = procs.start(home, "dashboard", "--port", str(port))
        wait_until(lambda: _status(f"http://127.0.0.1:{port}/api/sweeps") == 200, 30,
                   f"the dashboard to answer:\n{server.stderr}", every=0.1)
        yield Dash(f"http://127.0.0.1:{port}", home, procs)
    finally:
        procs.cleanup()


def _status(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        exc.close()  # (it holds the response's socket)
        return exc.code
    except OSError:
        return 0


def _done(page: Any) -> int:
    text = page.locator(f'tr[data-sweep="{SWEEP}"] .done').inner_text(timeout=10_000)
    return int(text.split("/")[0].replace(",", "").strip())


def test_dashboard_follows_a_running_sweep(dash: Dash, tmp_path: Path) -> None:
    with chromium(tmp_path / "profile") as browser:
        page = browser.new_page()
        page.goto(dash.url + "/")
        page.wait_for_selector(f'tr[data-sweep="{SWEEP}"]')
        assert _done(page) == 0
        assert page.locator("#alive").inner_text() == "0 workers alive"
        dash.procs.start(dash.home, "worker", "--allow", "tests.observability.funcs", "--workers", "2")
        page.wait_for_function("document.querySelector('#alive').textContent == '1 worker alive'",
                               timeout=15_000)
        seen = [0]
        deadline = time.monotonic() + 60
        while seen[-1] < TOTAL // 3 and time.monotonic() < deadline:
            page.wait_for_timeout(250)
            seen.append(_done(page))
        assert seen == sorted(seen), f"progress went down: {seen}"
        assert any(0 < d < TOTAL for d in seen), f"never saw the sweep mid-way: {seen}"
        assert len({d for d in seen if 0 < d < TOTAL}) >= 2 or seen[-1] == TOTAL, f"no rise seen: {seen}"
        screenshot(page, "dashboard-sweeps.png")

        # the sweep's own page, while it runs on
        page.click(f'tr[data-sweep="{SWEEP}"] a')
        page.wait_for_url(re.compile(f"/sweeps/{SWEEP}"))
        done = f"document.querySelector('.bar.big .done')?.textContent.startsWith('{TOTAL} / ')"
        page.wait_for_function(done, timeout=60_000)
        row = page.locator("#errors tbody tr").first
        row.wait_for(timeout=15_000)
        assert "ArithmeticError: the surface is undefined at a = b = 0.5" in row.inner_text()
        assert '{"a":0.5,"b":0.5}' in row.inner_text()
        row.locator("summary").click()
        assert "Traceback" in row.locator("pre").inner_text()
        canvas = page.locator('#plot canvas[data-kind="heatmap"]')
        canvas.wait_for(timeout=15_000)
        drawn = f"document.querySelector('#plot canvas').dataset.drawn == '{TOTAL - 1}'"
        page.wait_for_function(drawn, timeout=15_000)
        colours = page.evaluate(COUNT_COLOURS)
        assert colours > 50, f"the heat map has only {colours} colours"
        # the worker, alive, with its last heartbeat, and the points it committed here
        live = page.locator('#workers tbody tr[data-status="alive"]').first
        live.wait_for(timeout=10_000)
        assert re.fullmatch(r"\d+ s ago", live.locator(".heartbeat").inner_text()), live.inner_text()
        cells = live.locator("td").all_inner_texts()
        assert cells[0].rsplit("-", 1)[1].isdigit() and cells[4] == "2", cells  # host-pid, 2 children
        assert re.search(r"\d+ in \d+ chunks", cells[7]), cells
        assert page.locator("#throughput polyline").count() == 1
        page.wait_for_timeout(300)
        screenshot(page, "dashboard-sweep.png", full_page=True)

        # the line over one axis
        page.select_option("#py", "")
        page.locator('#plot canvas[data-kind="line"]').wait_for(timeout=10_000)

        # retry asks first: dismissed, nothing happens; accepted, the failed point runs again
        page.once("dialog", lambda d: d.dismiss())
        page.click("#retry")
        page.wait_for_timeout(300)
        assert page.locator("#actionresult").inner_text() == ""
        page.once("dialog", lambda d: d.accept())
        page.click("#retry")
        page.wait_for_function("document.querySelector('#actionresult').textContent.includes('retrying 1')",
                               timeout=10_000)


def test_off_loopback_the_token_is_required(tmp_path: Path) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1")
    assert token_for("127.0.0.1", None) is None
    assert token_for("0.0.0.0", None) and token_for("0.0.0.0", "given") == "given"
    procs = Procs(tmp_path / "logs")
    port = free_port()
    try:
        server = procs.start(tmp_path / ".ttg", "dashboard", "--host", "0.0.0.0", "--port", str(port))
        found = wait_until(lambda: re.search(r"\?token=(\S+)", server.stderr), 30, "the printed token",
                           every=0.1)
        token = found.group(1)
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: _status(f"{base}/api/sweeps?token={token}") == 200, 30, "the dashboard")
        assert _status(f"{base}/") == 401
        assert _status(f"{base}/api/sweeps") == 401
        assert _status(f"{base}/metrics") == 401
        assert _status(f"{base}/api/sweeps?token=wrong") == 401
        assert _status(f"{base}/", {"X-TTG-Token": token}) == 200
        assert _status(f"{base}/metrics", {"Authorization": f"Bearer {token}"}) == 200
    finally:
        procs.cleanup()


def test_without_a_token_only_loopback_host_names_are_served(dash: Dash) -> None:
    """DNS rebinding: a page of attacker.example whose name now resolves to 127.0.0.1
    must not reach the dashboard (it could cancel sweeps): without a token, a request
    naming any host but loopback is refused."""
    sweeps = f"{dash.url}/api/sweeps"
    port = dash.url.rsplit(":", 1)[1]
    for host in ("127.0.0.1", f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
        assert _status(sweeps, {"Host": host}) == 200, host
    for host in (f"attacker.example:{port}", "attacker.example", f"127.0.0.1.nip.io:{port}", ""):
        assert _status(sweeps, {"Host": host}) == 403, host
    body = json.dumps({"confirm": SWEEP}).encode()
    cancel = urllib.request.Request(f"{dash.url}/api/sweeps/{SWEEP}/cancel", method="POST", data=body,
                                    headers={"Host": f"attacker.example:{port}", "X-TTG-Action": "cancel",
                                             "Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(cancel, timeout=5)
    refused.value.close()  # (it holds the response's socket)
    assert refused.value.code == 403


def test_an_action_with_a_body_that_is_not_json_is_a_400(dash: Dash) -> None:
    req = urllib.request.Request(f"{dash.url}/api/sweeps/{SWEEP}/cancel", method="POST", data=b"{not json",
                                 headers={"X-TTG-Action": "cancel", "Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as bad:
        urllib.request.urlopen(req, timeout=5)
    with bad.value:  # (it holds the response's socket)
        assert bad.value.code == 400
        assert json.loads(bad.value.read()) == {"error": "the request's body is not JSON."}
    assert _status(f"{dash.url}/api/sweeps/{SWEEP}") == 200  # and the sweep is still there, not cancelled

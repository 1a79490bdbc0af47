"""The dashboard in real headless Chromium: it shows the traffic the test sent."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import TOKEN, eval_like_rows

from shopserve import Client
from shopserve.testing import ShopserveProcess

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def test_dashboard_shows_the_traffic_sent(server: ShopserveProcess) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("no chromium executable")
    with Client(server.url, admin_token=TOKEN) as client:
        for row in eval_like_rows(150, seed=51):
            client.rank([row], model="ctr")
        client.admin("canary", model="ctr", weight=0.35)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, timeout=30_000)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1500})
            page.goto(server.url + "/dashboard", timeout=15_000)
            # the first history point with the traffic lands within two sampling intervals
            page.wait_for_function(
                "Number(document.getElementById('chart-rps').dataset.max || 0) > 0 && "
                "Number(document.getElementById('requests-total').textContent) >= 150",
                timeout=20_000)
            assert int(page.text_content("#requests-total") or 0) >= 150
            assert page.get_attribute("#chart-rps polyline", "points")
            assert float(page.get_attribute("#chart-latency", "data-max") or 0) > 0
            assert page.text_content("#replicas-ready") == "2/2"
            models = page.text_content("#models") or ""
            assert "canary" in models and "0.35" in models
            assert "kill one replica under load" in (page.text_content("#drills") or "")
            assert "passed" in (page.text_content("#drills") or "")
            page.wait_for_function("document.getElementById('drift').textContent.includes"
                                   "('ok')", timeout=15_000)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000

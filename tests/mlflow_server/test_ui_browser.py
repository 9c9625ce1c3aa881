"""The MLflow UI in a real browser (Debian's headless chromium driven by Playwright): a user finds
the family's experiment, the sweep's parent run with its nested trials, and a trial's charts."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.mlflow_server.conftest import read_sweep

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
# Nothing reaches out to the network; Playwright's own browser downloads are never used.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(120_000)  # a React app on a busy CI machine; waits end as soon as the text shows
            yield page
        finally:
            browser.close()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path))
    print(f"screenshot: {path}")
    return path


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing: apt-get install chromium")
def test_the_sweep_and_a_trials_charts_show_in_the_ui(served_sweep, page):
    _, trials = read_sweep(served_sweep.server.url, served_sweep.name)
    trial_names = sorted(trial["info"]["run_name"] for trial in trials)

    page.goto(served_sweep.server.url)
    page.get_by_text("Model training", exact=True).click()  # MLflow 3 opens on its GenAI view
    page.get_by_role("link", name="localization", exact=True).first.click()
    parent = page.get_by_role("row").filter(has_text=served_sweep.name)
    parent.get_by_role("link", name=served_sweep.name, exact=True).wait_for()
    parent.locator("[col-id='attributes.`Run Name`']").get_by_role("button").click()  # expand the nested runs
    for name in trial_names:
        page.get_by_role("link", name=name, exact=True).wait_for()
    screenshot(page, "mlflow-ui-sweep-runs.png")

    trial = trial_names[0]
    page.get_by_role("link", name=trial, exact=True).click()
    page.get_by_text("Model metrics", exact=True).click()
    page.get_by_placeholder("Search metric charts").fill("val_mean_error_m")
    page.get_by_text(f"{trial} (val_mean_error_m)").wait_for()  # the chart's legend: the chart has its data
    page.locator(".js-plotly-plot").first.wait_for()  # drawn just after its legend: a busy machine can show the gap
    assert screenshot(page, "mlflow-ui-trial-metrics.png").stat().st_size > 10_000

"""What a new user does in the Dagster UI after `make dev` (docs/in-the-ui.md, step by step): the asset graph
shows the copies, a range of partitions backfilled from the asset's Materialize dialog succeeds and turns
those partitions materialized, their checks pass, and the sensor page lists the sensor's ticks.

Headless Chromium (Debian's, driven by Playwright) against the stack `make dev` starts. Each step saves a
screenshot; `ZENSKAR_UI_SCREENSHOTS=docs/ui` writes them into the repository for the walkthrough. Selectors
are the texts and roles the UI shows, never schedule or job names, which change with the product.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from zenskar_pipeline_tests.test_end_to_end.project import REPO
from zenskar_pipeline_tests.test_ui.stack import DevStack, dev_stack

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS_ENV = "ZENSKAR_UI_SCREENSHOTS"
VIEWPORT = {"width": 1280, "height": 800}
# The demo's hourly compute readings: partitioned daily, and the sensor's first run lands only the latest
# partition of a copy that does not exist yet, so days a few back are still missing when the test starts.
ASSET_PATH = "zenskar/main/metering/compute_hours"
LOCATION = "zenskar_pipeline"  # workspace.yaml's
# Generous: on 2 shared cores the code location loads in seconds to tens of seconds, and the backfill waits
# for the daemon's next backfill pass (about every 30 s) before its run is queued.
LOAD_MS = 120_000
BACKFILL_MS = 240_000
SENSOR_TICK_MS = 120_000
INVITATION_MS = 15_000
FINAL_BACKFILL_STATUS = re.compile(r"Succeeded|Failed|Canceled|Completed")


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the UI test drives Debian's chromium; run devtools/system-packages.sh "
            "(or `apt-get install chromium`)"
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield launched
        launched.close()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where the steps' screenshots go: `$ZENSKAR_UI_SCREENSHOTS` (relative to the repository), else a
    temp folder."""
    chosen = os.environ.get(SCREENSHOTS_ENV)
    folder = (REPO / chosen) if chosen else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_a_new_user_backfills_a_range_and_sees_the_sensor_tick(
    browser: Browser, screenshots: Path, tmp_path: Path
) -> None:
    today = dt.datetime.now(dt.UTC).date()
    first, middle, last = (str(today - dt.timedelta(days=days)) for days in (5, 4, 3))
    with dev_stack(tmp_path / "project") as stack:
        ui = Walkthrough(browser.new_page(viewport=VIEWPORT), stack, screenshots)  # type: ignore[arg-type]
        try:
            ui.asset_graph_shows_the_copies()
            backfill_id = ui.backfill_from_the_ui(f"[{first}...{last}]")
            ui.backfill_succeeds(backfill_id)
            ui.partitions_are_materialized(f"[{first}...{last}]", middle)
            ui.checks_pass([first, middle, last])
            ui.sensor_ticks()
        except BaseException:
            ui.shoot("failed-here.png")
            print(f"the page at the failure: {screenshots / 'failed-here.png'}; the stack's log: {stack.log}")
            raise


@dataclass
class Walkthrough:
    """docs/in-the-ui.md's steps, each ending in its screenshot."""

    page: Page
    stack: DevStack
    screenshots: Path

    def asset_graph_shows_the_copies(self) -> None:
        page = self.page
        page.goto(self.stack.url)
        self.skip_the_community_invitation()
        self.navigate("Lineage")
        expect(page.get_by_text("Global asset lineage")).to_be_visible(timeout=LOAD_MS)
        # The graph opens with one box per asset group (one per source schema); its settings menu expands
        # them all.
        page.get_by_role("button", name="settings", exact=True).click()
        page.get_by_role("menuitem", name=re.compile("Expand all groups")).click()
        page.keyboard.press("Escape")
        for copy in ("usage_events", "customers", "compute_hours"):
            expect(self.visible(copy)).to_be_visible(timeout=LOAD_MS)
        # One group's own page fits its graph to the window: each source table beside its copy.
        page.goto(f"{self.stack.url}/locations/{LOCATION}/asset-groups/main_billing")
        expect(self.visible("usage_events")).to_be_visible(timeout=LOAD_MS)
        expect(page.get_by_text(re.compile(r"^Loading"))).to_have_count(0, timeout=LOAD_MS)
        expect(page.get_by_text(re.compile(r"^Materializing"))).to_have_count(0, timeout=LOAD_MS)
        self.shoot("1-asset-graph.png")

    def backfill_from_the_ui(self, partition_range: str) -> str:
        """The asset's Materialize dialog: the range as its partition selection, then Launch backfill;
        returns the backfill's id from the toast that confirms it."""
        page = self.page
        page.goto(f"{self.stack.url}/assets/{ASSET_PATH}?view=partitions")
        self.show_range(partition_range)
        expect(page.get_by_text("Missing (3)")).to_be_visible(timeout=LOAD_MS)  # not landed by anything else
        page.get_by_role("button", name="Materialize…").click()
        dialog = page.get_by_role("dialog")
        # The dialog starts from the range the tab shows; typed again, as a user opening it elsewhere would.
        selection = dialog.get_by_role("textbox").first
        selection.fill(partition_range)
        selection.press("Enter")
        expect(dialog.get_by_text("3 partitions", exact=True)).to_be_visible()
        self.shoot("2-launch-backfill.png")
        dialog.get_by_role("button", name="Launch backfill").click()
        created = page.get_by_text(re.compile(r"Created backfill \w+"))
        expect(created).to_be_visible(timeout=LOAD_MS)
        backfill_id = (created.text_content() or "").split()[-1]
        page.get_by_role("link", name="View", exact=True).click()  # the toast's
        return backfill_id

    def backfill_succeeds(self, backfill_id: str) -> None:
        page = self.page
        expect(page.get_by_text(backfill_id).first).to_be_visible(timeout=LOAD_MS)
        status = page.get_by_text("Status", exact=True).locator("xpath=following-sibling::*[1]")
        expect(status).to_have_text(FINAL_BACKFILL_STATUS, timeout=BACKFILL_MS)
        expect(status).to_have_text("Succeeded")
        expect(page.get_by_text("100% completed")).to_be_visible()
        self.shoot("3-backfill-succeeded.png")

    def partitions_are_materialized(self, partition_range: str, middle: str) -> None:
        page = self.page
        page.goto(f"{self.stack.url}/assets/{ASSET_PATH}?view=partitions")
        self.show_range(partition_range)
        expect(page.get_by_text("Materialized (3)")).to_be_visible(timeout=LOAD_MS)
        expect(page.get_by_text("Missing (0)")).to_be_visible()
        # One partition: its latest materialization, the run that made it, the sync's metadata.
        self.visible(middle).click()
        expect(page.get_by_text("rows_written", exact=True)).to_be_visible(timeout=LOAD_MS)
        self.shoot("4-partitions-materialized.png")

    def checks_pass(self, partitions: list[str]) -> None:
        page = self.page
        page.goto(f"{self.stack.url}/assets/{ASSET_PATH}?view=checks")
        expect(page.get_by_text("Passed", exact=True).first).to_be_visible(timeout=LOAD_MS)
        # The backfill's range run answered its check for each of its partitions: a "Passed" row per day
        # in the history (and the sensor's run's), none "Skipped".
        page.get_by_text("Execution history", exact=True).click()
        passed = page.get_by_role("row").filter(has_text="Passed")
        expect(passed.nth(len(partitions) - 1)).to_be_visible(timeout=LOAD_MS)
        expect(page.get_by_role("row").filter(has_text="Skipped")).to_have_count(0)
        self.shoot("5-asset-checks.png")

    def sensor_ticks(self) -> None:
        page = self.page
        page.goto(self.stack.url)
        self.navigate("Automation")
        page.get_by_role("link", name="delta_version_sensor").click()
        # Each tick is a row of the table: when, what it asked for ("N runs requested") or why it skipped.
        tick = page.get_by_role("row").filter(has_text=re.compile(r"\d+ runs? requested"))
        expect(tick.first).to_be_visible(timeout=SENSOR_TICK_MS)
        tick.first.scroll_into_view_if_needed()
        self.shoot("6-sensor-ticks.png")

    def skip_the_community_invitation(self) -> None:
        """A new instance's UI on localhost asks, a second after it opens, whether to join Dagster's
        community; Skip records the answer in the instance, so it is asked once."""
        skip = self.page.get_by_role("dialog").get_by_role("button", name="Skip")
        with contextlib.suppress(PlaywrightTimeoutError):  # a Dagster version that does not ask
            skip.click(timeout=INVITATION_MS)
        expect(skip).not_to_be_visible()

    def navigate(self, item: str) -> None:
        """The navigation's link `item` (its accessible name is its icon's name, then the label)."""
        self.page.get_by_role("link", name=re.compile(rf"(^|\s){item}$")).click()

    def show_range(self, partition_range: str) -> None:
        """The partitions tab's own filter (it suggests `[a...b]` ranges)."""
        selection = self.page.get_by_placeholder(re.compile(r"^ex: "))
        selection.fill(partition_range)
        selection.press("Enter")
        expect(self.page.get_by_text("3 Partitions Selected")).to_be_visible(timeout=LOAD_MS)

    def visible(self, text: str) -> Locator:
        """The first visible element reading exactly `text` (the UI keeps hidden copies to measure labels)."""
        return self.page.get_by_text(text, exact=True).filter(visible=True).first

    def shoot(self, name: str) -> None:
        """A screenshot of the window, the project's folder (in copies' paths) masked: it is the test's."""
        folder = self.page.get_by_text(re.compile(re.escape(str(self.stack.folder))))
        self.page.screenshot(path=self.screenshots / name, mask=[folder], mask_color="#d9d9d9")

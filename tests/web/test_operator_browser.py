"""The operator's views in Debian's chromium (issue 27), as a person uses them: a run page
that fills its device grid, failure table and in-progress list while the run goes (no
reload); identical diffs grouped and expandable; rerunning the failed devices from the
run page, the two runs linked; a job's own page; the schedules page telling that no
scheduler runs, listing an invalid job file with its line, tagging the job that needs
approval, pausing and resuming a schedule; the count of previews awaiting approval in the
navigation. A screenshot of each is saved in the test's temporary directory."""

from __future__ import annotations

import re

from selenium.webdriver.common.by import By

from tests.support.browser import Person
from tests.support.fleet import Fleet
from tests.support.jobs import write_job
from tests.support.web import Web


def confirm_click(person: Person, css: str) -> None:
    """Click a button that asks first, say yes, wait for the next page."""
    person.confirm_click(person.find(css))


def test_a_run_page_follows_the_run_live(person: Person, web: Web, fleet: Fleet) -> None:
    person.log_in(web.token("operator", "lena"))
    person.open("/jobs")
    person.click(person.find("form[data-job='slow'] button[value='run']"))
    assert re.search(r"/runs/[0-9a-f]{12}$", person.driver.current_url)
    run_url = person.driver.current_url
    person.driver.execute_script("window.sameDocument = true")
    # the healthy device appears in the grid, the slow one is listed in progress, timed
    person.wait(f".grid .cell[data-host='{fleet.healthy()[0]}']", 60)
    working = person.wait(f"[data-working-list] li[data-host='{fleet.slow[0]}']")
    assert re.search(r"\d+\.\ds$", working.text)
    assert person.find("[data-empty]").get_attribute("hidden") is not None
    assert person.driver.execute_script("return window.sameDocument") is True  # no reload
    assert "1 of 2 devices" in person.find(".progress").text.replace("\n", " ")
    person.screenshot("run-live")
    confirm_click(person, "form[action$='/cancel'] button")
    person.driver.get(run_url)
    person.wait("h1 .st-interrupted", 90)
    # the interrupted device is in the failure table; its rerun is one click away
    assert fleet.slow[0] in person.find("[data-failed]").text
    assert person.all("[data-working]") == []
    assert person.errors() == []


def test_rerun_from_the_run_page_and_the_runs_linked(person: Person, web: Web,
                                                     fleet: Fleet) -> None:
    write_job(web.jobs, "probe2", targets={"hosts": [*fleet.refusing, fleet.healthy()[1]]},
              driver="asyncssh", steps=[{"command": "show version"}])
    person.log_in(web.token("operator", "mona"))
    person.open("/jobs")
    person.click(person.find("form[data-job='probe2'] button[value='run']"))
    person.wait("h1 .st-failed")
    first = person.driver.current_url
    boxes = person.all("form.rerun input[name='status']")
    assert [b.get_attribute("value") for b in boxes] == ["auth_failed"]
    person.screenshot("run-failed-rerun-form")
    confirm_click(person, "form.rerun button")
    person.wait("h1 .st-failed")
    assert person.find("[data-rerun-of] a").get_attribute("href") == first
    assert [c.get_attribute("data-host") for c in person.all(".grid .cell")] == fleet.refusing
    rerun = person.driver.current_url
    person.driver.get(first)
    assert person.find("[data-reruns] a").get_attribute("href") == rerun
    person.screenshot("run-with-rerun")
    assert person.errors() == []


def test_identical_diffs_are_grouped(person: Person, web: Web, fleet: Fleet) -> None:
    # a line no other test sends: the session's simulated devices keep what earlier
    # modules configured, and a line already there previews no diff
    line = "ntp server 198.18.7.77"
    write_job(web.jobs, "ntp-group", targets={"hosts": [*fleet.refusing, *fleet.healthy()[:3]]},
              driver="asyncssh", steps=[{"config": {"lines": [line]}}])
    person.log_in(web.token("operator", "nina"))
    person.open("/jobs")
    person.click(person.find("form[data-job='ntp-group'] button[value='dry-run']"))
    person.wait("h1 .st-failed")
    # devices whose diffs are identical share one group (earlier modules may have left one
    # of the three with other lines around the change: then it has a diff of its own)
    groups = person.all("details.devdiff.group")
    assert groups, "no identical diffs were grouped"
    group = max(groups, key=lambda g: int(g.get_attribute("data-hosts") or 0))
    count = int(group.get_attribute("data-hosts") or 0)
    assert count >= 2
    summary = group.find_element(By.CSS_SELECTOR, "summary")
    assert summary.text.startswith(f"{count} devices: same diff")
    diff = group.find_element(By.CSS_SELECTOR, "pre.diff")
    assert not diff.is_displayed()  # folded until asked
    summary.click()
    assert diff.is_displayed() and f"+{line}" in diff.text
    hosts = [a.text for a in group.find_elements(By.CSS_SELECTOR, "p.hosts a")]
    assert len(hosts) == count and set(hosts) <= set(fleet.healthy()[:3])
    shown = [*hosts, *(d.get_attribute("data-host") or ""
                       for d in person.all("details.devdiff:not(.group)"))]
    assert sorted(shown) == sorted(fleet.healthy()[:3])  # every changed device once
    person.screenshot("run-diffs-grouped")


def test_job_page(person: Person, web: Web, fleet: Fleet) -> None:
    person.log_in(web.token("viewer", "otto"))
    person.open("/jobs")
    person.click(person.find("a[href='/jobs/ntp-group']"))
    assert person.find("h1").text.startswith("ntp-group")
    assert "4 devices" in person.find("[data-targets]").text
    assert "ntp server 198.18.7.77" in person.find("[data-yaml]").text
    assert person.all("[data-runs] tbody tr")  # the dry run of the test before
    person.screenshot("job")
    person.open("/jobs/logging")
    assert person.find("[data-approval]").text == "approval required"
    assert "no scheduler running" in person.find("dl.facts").text
    person.open("/jobs/no-such-job")
    assert "no job named" in person.find("body").text
    assert person.errors() == [] or all("404" in e for e in person.errors())


def test_schedules_are_honest(person: Person, web: Web) -> None:
    broken = web.jobs / "broken.yml"
    broken.write_text("name: broken\nsteps:\n  - command: show clock\nschedule:\n"
                      "  every: 5m\n", encoding="utf-8")
    try:
        person.log_in(web.token("operator", "paul"))
        person.open("/schedules")
        banner = person.find("[data-scheduler]")
        assert banner.get_attribute("data-scheduler") == "none"
        assert "No scheduler is running" in banner.text
        row = person.find("[data-invalid] tr[data-file$='broken.yml']")
        assert f"{broken}:5: schedule.every: unknown field" in row.text
        assert "not scheduled" in row.text
        logging = person.find("section.schedule[data-job='logging']")
        assert logging.find_element(By.CSS_SELECTOR, "[data-approval]").text == \
            "approval required"
        assert "(if runner serve runs)" in logging.text
        person.screenshot("schedules-honest")

        facts = person.find("form[action='/schedules/facts/pause']")
        facts.find_element(By.NAME, "reason").send_keys("CHG-12 freeze")
        person.click(facts.find_element(By.CSS_SELECTOR, "button"))
        section = person.find("section.schedule[data-job='facts']")
        assert section.find_element(By.CSS_SELECTOR, "[data-paused]").text == "paused"
        assert "paul" in person.find("[data-paused-by]").text
        assert "CHG-12 freeze" in person.find("[data-paused-by]").text
        person.screenshot("schedule-paused")
        person.click(person.find("form[action='/schedules/facts/resume'] button"))
        assert person.all("section.schedule[data-job='facts'] [data-paused]") == []
        person.open("/jobs")
        assert "schedule.every" in person.find("[data-invalid]").text
    finally:
        broken.unlink()
    assert person.errors() == []


def test_previews_awaiting_approval_are_counted_in_the_navigation(
        person: Person, web: Web) -> None:
    person.log_in(web.token("operator", "quinn"))
    person.open("/runs")
    before = int(person.find("a.pending").get_attribute("data-pending") or 0) \
        if person.all("a.pending") else 0
    person.open("/jobs")
    person.click(person.find("form.run[data-job='logging'] button[value='run']"))
    person.wait("h1 .st-awaiting_approval")
    pending = person.find("header a.pending")
    assert pending.get_attribute("data-pending") == str(before + 1)
    assert pending.text == f"{before + 1} awaiting approval"
    person.click(pending)
    assert person.driver.current_url.endswith("/runs?status=awaiting_approval")
    person.screenshot("pending-approvals")

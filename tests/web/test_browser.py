"""The dashboard in Debian's chromium (headless, through chromium-driver), as a person uses
it: log in with a token, start a dry run from the jobs page and see its diff, see the device
that failed in red and open it, open a changed device's diff, look at schedules, backups and
labs; a screenshot of each page is saved in the test's temporary directory. Form posts
without the session's CSRF token are refused."""

from __future__ import annotations

import re

import httpx
from selenium.webdriver.common.by import By

from runner.job.backups import BackupRepo
from tests.support.browser import (
    ADDED_GREEN,
    COMPLIANT_BG,
    NON_COMPLIANT_BG,
    RED,
    Person,
)
from tests.support.fleet import Fleet
from tests.support.web import Web, fake_lab


def test_log_in_dry_run_failed_device_in_red_and_diffs(person: Person, web: Web,
                                                       fleet: Fleet) -> None:
    person.open("/runs")
    assert person.driver.current_url.startswith(web.base + "/login")  # not logged in yet
    person.log_in("runner_000000000000_" + "x" * 43)
    assert "not valid" in person.find("[role=alert]").text
    assert [e for e in person.errors() if "401" not in e] == []  # (reading clears them)
    person.screenshot("login")
    person.log_in(web.token("operator", "alice"))
    assert person.driver.current_url == web.base + "/runs"
    assert "alice" in person.find("header .who").text

    # a dry run from the jobs page: the run's page follows it and shows the diff
    person.open("/jobs")
    person.screenshot("jobs")
    person.click(person.find("form[data-job='ntp'] button[value='dry-run']"))
    assert re.search(r"/runs/[0-9a-f]{12}$", person.driver.current_url)
    run_url = person.driver.current_url
    person.wait("h1 .st-failed")  # the page reloads by itself when the run has ended
    assert "nothing was sent" in person.find(".note").text
    # the three healthy devices' identical diffs are one group, opened with a click
    group = person.find(f"details.devdiff[data-host='{fleet.healthy()[0]}']")
    group.find_element(By.CSS_SELECTOR, "summary").click()
    diff = group.find_element(By.CSS_SELECTOR, "pre.diff")
    assert "+ntp server 192.0.2.10" in diff.text  # the diff a real run would record
    added = diff.find_element(By.CSS_SELECTOR, ".add")
    assert person.colour(added, "color") == ADDED_GREEN
    person.screenshot("run")

    # the device that refused the login is red, listed first, and opens its record
    cells = person.all(".grid .cell")
    failed = cells[0]
    assert failed.get_attribute("data-host") == fleet.refusing[0]
    assert "st-auth_failed" in (failed.get_attribute("class") or "")
    assert person.colour(failed, "background-color") == RED
    assert person.colour(cells[1], "background-color") != RED
    person.click(failed)
    assert person.find("h1").text.startswith(fleet.refusing[0])
    assert "AuthFailed" in person.find(".error").text
    person.screenshot("device-failed")

    # a changed device's own page: its diff, coloured
    person.driver.get(run_url)
    person.click(person.find(f".grid .cell[data-host='{fleet.healthy()[1]}']"))
    assert "+ntp server 192.0.2.11" in person.find("pre.diff").text
    assert person.colour(person.find("pre.diff .add"), "color") == ADDED_GREEN
    person.screenshot("device-diff")

    # the runs page lists it, failed (one device refused the login), as a dry run
    person.open("/runs")
    row = person.find(f"a[href='{run_url.removeprefix(web.base)}']")
    assert row.find_element(By.XPATH, "../..").find_element(
        By.CSS_SELECTOR, ".st-failed").text == "failed"
    person.screenshot("runs")
    assert person.errors() == []


def test_a_change_that_needs_approval_is_previewed_and_decided_by_name(
        person: Person, web: Web) -> None:
    person.log_in(web.token("operator", "erin"))
    person.open("/jobs")
    form = person.find("form.run[data-job='logging']")
    labels = [b.text for b in form.find_elements(By.CSS_SELECTOR, "button")]
    assert labels == ["Dry run", "Preview for approval"]  # no button sends it at once
    assert person.all("form.override") == []  # an operator may not override approval
    person.click(form.find_element(By.CSS_SELECTOR, "button[value='run']"))
    person.wait("h1 .st-awaiting_approval")
    assert person.find(".note").text.startswith("Preview for approval: nothing was sent")
    assert person.find("[data-started-by]").text == "erin"
    actions = (person.find(".actions").get_attribute("data-actions") or "").split()
    changed = "changed" in person.find("[data-counts]").text
    assert actions == (["approve", "reject"] if changed else ["reject"])
    person.screenshot("preview-awaiting-approval")
    reject = person.find("form[action$='/reject']")
    reject.find_element(By.NAME, "reason").send_keys("change freeze")
    person.click(reject.find_element(By.CSS_SELECTOR, "button"))
    person.wait("h1 .st-rejected")
    decision = person.find("[data-decision]").text
    assert "rejected by erin" in decision and "change freeze" in decision
    assert person.all(".actions") == []  # a rejected preview offers nothing to run
    person.screenshot("preview-rejected")

    # an admin may run it without approval: recorded, with the reason
    person.log_in(web.token("admin", "frank"))
    person.open("/jobs")
    override = person.find("form.override[data-job='logging']")
    override.find_element(By.NAME, "reason").send_keys("CHG-99 outage")
    # "Send logging's change now WITHOUT approval?"
    person.confirm_click(override.find_element(By.CSS_SELECTOR, "button[value='no-approval']"))
    person.wait("h1 .st-ok")
    assert "frank" in person.find("[data-override]").text
    assert "CHG-99 outage" in person.find("[data-override]").text
    assert person.find("[data-started-by]").text == "frank"
    assert person.all(".note") == []  # a real run
    person.screenshot("approval-overridden")
    assert person.errors() == []


def test_schedules_backups_labs_pages(person: Person, web: Web) -> None:
    repo = BackupRepo(web.workdir / "backups")
    first, _ = repo.commit({"core-1": "hostname core-1\nntp server 192.0.2.1\n"}, "one")
    second, _ = repo.commit({"core-1": "hostname core-1\nntp server 192.0.2.2\n"}, "two")
    fake_lab(web)
    person.open("/schedules")
    jobs = [s.get_attribute("data-job") for s in person.all("section.schedule")]
    assert jobs == ["facts", "logging"]
    logging = person.find("section.schedule[data-job='logging']")
    assert "CET" in logging.text or "CEST" in logging.text  # next fires in its own zone
    person.screenshot("schedules")
    person.open("/backups")
    person.click(person.find("a[href^='/backups/core-1?']"))
    assert "-ntp server 192.0.2.1" in person.find("pre.diff").text
    assert "+ntp server 192.0.2.2" in person.find("pre.diff").text
    assert second and first and second[:10] in person.find("h2#diff").text
    person.screenshot("backup")
    person.open("/labs")
    assert person.find("section.lab[data-lab='webtest'] table").text.count("absent") == 3
    image = person.find("img.topology")
    assert person.driver.execute_script("return arguments[0].naturalWidth", image) > 0
    person.screenshot("labs")
    person.open("/docs")
    person.wait(".swagger-ui .opblock", 30)  # served from the package, no CDN
    person.screenshot("api-docs")
    assert person.errors() == []


def test_the_compliance_matrix_a_cells_lines_and_its_remediation(
        person: Person, web: Web, fleet: Fleet) -> None:
    host = fleet.healthy()[5]
    token = web.token("operator", "gwen")
    with web.client(token) as api:
        check = api.post("/api/runs", json={"job": "golden"}).json()["run_id"]
        web.wait_finished(api, check)
    person.log_in(token)
    person.open("/compliance")
    cell = person.wait(f"td.cell[data-host='{host}'][data-feature='ntp']")
    assert cell.get_attribute("data-status") == "non_compliant"
    assert person.colour(cell, "background-color") == NON_COMPLIANT_BG
    fine = person.find(f"td.cell[data-host='{host}'][data-feature='logging']")
    assert person.colour(fine, "background-color") == COMPLIANT_BG
    assert "2 missing, 1 extra" in cell.text
    person.screenshot("compliance-matrix")
    # filtered: only the devices with a feature out of compliance, only that feature
    form = person.find("form.filters")
    form.find_element(By.XPATH, ".//select[@name='feature']/option[.='ntp']").click()
    form.find_element(By.CSS_SELECTOR, "select[name=status] option[value='non_compliant']") \
        .click()
    person.click(form.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    assert [th.text for th in person.all("table.compliance thead th")] == ["Device", "ntp"]
    assert [td.text for td in person.all("table.compliance tbody td.mono")] == [host]
    person.click(person.find(f"td.cell[data-host='{host}'] a"))
    assert person.find("pre.missing").text.splitlines() == ["ntp server 192.0.2.10",
                                                           "ntp server 192.0.2.11"]
    assert person.find("pre.extra").text.splitlines() == ["ntp server 192.0.2.123"]
    assert "no ntp server 192.0.2.123" in person.find("pre.remediation").text
    assert "first" in person.find("table.history").text
    person.screenshot("compliance-cell")
    person.click(person.find("form.actions button[value='dry-run']"))
    person.wait("h1 .st-ok, h1 .st-failed")
    assert check in person.find("[data-remediates]").text
    diff = person.find(f"details.devdiff[data-host='{host}'] pre.diff")
    assert "-ntp server 192.0.2.123" in str(diff.get_attribute("textContent"))
    assert person.errors() == []


def test_a_viewer_sees_no_actions_and_logs_out(person: Person, web: Web) -> None:
    person.log_in(web.token("operator", "dave"))
    person.open("/runs")
    assert "dave" in person.find("header .who").text
    person.click(person.find("header .who button"))  # log out (a CSRF-checked post)
    assert person.driver.current_url.startswith(web.base + "/login")
    person.open("/runs")
    assert person.driver.current_url.startswith(web.base + "/login")
    person.log_in(web.token("viewer", "bob"))
    person.open("/jobs")
    assert person.all("form.run") == []
    assert "viewer" in person.find(".note").text


def test_form_posts_need_the_session_csrf_token(web: Web, fleet: Fleet) -> None:
    token = web.token("operator", "carol")
    with httpx.Client(base_url=web.base, follow_redirects=False) as client:
        page = client.get("/login").text
        login_csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert login_csrf
        assert client.post("/login", data={"token": token, "csrf": login_csrf.group(1)}
                           ).status_code == 303
        cookie = client.cookies.get("runner_session")
        assert cookie
        jobs = client.get("/jobs").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', jobs)
        assert csrf
        forged = client.post("/jobs/run", data={"job": "facts", "mode": "dry-run"})
        assert forged.status_code == 403
        wrong = client.post("/jobs/run", data={"job": "facts", "mode": "dry-run",
                                               "csrf": "guess"})
        assert wrong.status_code == 403
        # the session may call the API too, but a post needs the token in a header
        assert client.post("/api/runs", json={"job": "facts"}).status_code == 403
        done = client.post("/jobs/run", data={"job": "facts", "mode": "dry-run",
                                              "csrf": csrf.group(1)})
        assert done.status_code == 303 and done.headers["location"].startswith("/runs/")
    set_cookie = httpx.get(f"{web.base}/login").headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=lax" in set_cookie

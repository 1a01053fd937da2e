"""Devices, backups and error pages in Debian's chromium, as an on-call engineer uses them:
find the device whose last run failed, open its story; see the backup table with the
device that never backed up in red and its login error; open a device's backup, look at
its config at an older version, compare two versions, download one, follow a commit to
its run; a bad address is a page that says what is wrong. Screenshots in the test's
temporary directory."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from tests.support.browser import ADDED_GREEN, RED, Person
from tests.support.fleet import Fleet
from tests.support.web import Web

FAILED_BG = "rgba(254, 226, 226, 1)"  # --failed-bg in style.css: a failed backup's row


@pytest.fixture(scope="module")
def person(browser: WebDriver, web: Web,
           tmp_path_factory: pytest.TempPathFactory) -> Person:
    someone = Person(browser, web, tmp_path_factory.mktemp("screenshots"))
    someone.log_in(web.token("viewer", "oncall"))
    return someone


def test_find_the_failed_device_and_read_its_story(person: Person, fleet: Fleet,
                                                   story: dict[str, str]) -> None:
    person.open("/devices")
    assert person.find("header nav a.here").text == "Devices"
    assert len(person.all("table.devices tbody tr")) == 8
    person.screenshot("devices")
    Select(person.find("select[name=status]")).select_by_value("auth_failed")
    person.click(person.find("form.filters button[type=submit]"))
    rows = person.all("table.devices tbody tr")
    refusing = fleet.refusing[0]
    assert [r.get_attribute("data-device") for r in rows] == [refusing]
    badge = rows[0].find_element(By.CSS_SELECTOR, ".st-auth_failed")
    assert person.colour(badge, "color") == RED
    assert "authentication failed" in rows[0].text
    person.click(rows[0].find_element(By.CSS_SELECTOR, f"a[href='/devices/{refusing}']"))
    assert person.find("h1").text.startswith(refusing)
    assert "authentication failed" in person.find("p.error").text
    never = person.find("table.device-backups tr.backup-never")
    assert person.colour(never.find_element(By.CSS_SELECTOR, "td"), "background-color") \
        == FAILED_BG
    assert person.find("dd.lease").text == "free"
    person.screenshot("device-failed")

    person.open(f"/devices/{fleet.healthy()[0]}")
    runs = person.all("table.device-runs tbody tr")
    assert [r.find_element(By.CSS_SELECTOR, "a.mono").text for r in runs] == [
        story["more"], story["ntp"]]
    assert "password" not in person.find("main").text.lower()
    person.screenshot("device")
    assert person.errors() == []


def test_backups_table_versions_configs_and_diffs(person: Person, web: Web, fleet: Fleet,
                                                  story: dict[str, str]) -> None:
    person.open("/backups")
    first = person.find("table.backups tbody tr")
    assert first.get_attribute("data-host") == fleet.refusing[0]  # never backed up: first
    assert "backup-never" in (first.get_attribute("class") or "")
    assert person.colour(first.find_element(By.CSS_SELECTOR, "td"), "background-color") \
        == FAILED_BG
    assert "authentication failed" in first.text
    changed = person.find(f"table.backups tr[data-host='{fleet.healthy()[0]}']")
    assert changed.find_elements(By.CSS_SELECTOR, "td")[3].text == "2"
    person.screenshot("backups")
    person.click(changed.find_element(By.CSS_SELECTOR, f"a[href='/runs/{story['more']}']"))
    assert person.driver.current_url.endswith(f"/runs/{story['more']}")

    person.open("/backups")
    person.click(person.find(f"a[href^='/backups/{fleet.healthy()[0]}?']"))
    assert story["line"] + "\n" in person.find("pre.config").text + "\n"
    added = person.find("pre.diff .add")
    assert f"+{story['line']}" in [a.text for a in person.all("pre.diff .add")]
    assert person.colour(added, "color") == ADDED_GREEN
    runs = [a.text for a in person.all("table.versions a.run")]
    assert runs == [story["more"], story["ntp"]]  # each version links to its run
    person.screenshot("backup-device")
    person.click(person.all("table.versions a.version")[1])  # the older version
    assert story["line"] + "\n" not in person.find("pre.config").text + "\n"
    assert "ntp server 192.0.2.10" in person.find("pre.config").text
    href = person.find("a.download").get_attribute("href") or ""
    disposition = person.driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0]).then(r => done(r.status + ' ' + "
        "r.headers.get('content-disposition')));", href)
    assert disposition.startswith("200 attachment;") and fleet.healthy()[0] in disposition
    # compare the same two versions the other way round: the line goes
    person.find("table.versions tbody tr:nth-child(1) input[name=from]").click()
    person.find("table.versions tbody tr:nth-child(2) input[name=to]").click()
    person.click(person.find("form.compare button[type=submit]"))
    assert f"-{story['line']}" in person.find("pre.diff").text.splitlines()
    person.screenshot("backup-compare")
    assert person.errors() == []


def test_bad_addresses_are_pages_that_say_what_is_wrong(person: Person) -> None:
    person.open("/runs?page=abc")
    assert person.find("h1").text == "Cannot do that"
    assert "page" in person.find("[role=alert]").text
    person.screenshot("error-bad-page")
    person.open("/runs?page=999")
    assert person.find("h1").text == "Not found"
    assert "page 999" in person.find("[role=alert]").text
    person.open("/devices/no-such-device")
    assert "no-such-device" in person.find("[role=alert]").text
    person.open("/no/such/page")
    assert person.find("h1").text == "Not found"
    assert person.find("header nav")  # the error page keeps the navigation
    person.screenshot("error-not-found")

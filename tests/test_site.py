"""`eegbench leaderboard --site`: a static site that opens from disk, checked as files and in headless Chromium.

The browser tests drive the Debian ``chromium`` with its ``chromedriver`` through selenium (no browser
download; ``.ci/run`` installs both) and are skipped, with the reason, where either is missing. They
write a screenshot of every page to ``tests/artifacts/site/`` (ignored by git).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from typer.testing import CliRunner

from eegbench.attestation import AttestationRecord, write_attestation
from eegbench.cli import app
from eegbench.errors import InvalidInputError
from eegbench.leaderboard import build_rows
from eegbench.pitfalls import PITFALLS, SECTION_TITLE, MetricChange, PitfallRecord, PitfallResult, PitfallTask
from eegbench.records import ResultRecord
from eegbench.results import ResultStore
from eegbench.runner import run
from eegbench.results_dataset import export_results, load_results_dataset
from eegbench.site import SITE_MARKER, build_site, entry_anchor, record_path, write_site
from helpers import tiny_task

ARTIFACTS = Path(__file__).parent / "artifacts" / "site"
PAGE = "synthetic-intra-v1"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Three entries on the tiny task (shallow at two fixed layers, for the depth plot) and a pitfall record."""
    root = tmp_path_factory.mktemp("results")
    task = tiny_task()
    task = task.with_overrides(training={**task.training, "epochs": 2})  # default hyperparameters: on the depth plot
    run(task, "final", results_dir=root)
    for layer in ("blocks.3", "blocks.5"):
        run(task, "shallow", layer=layer, results_dir=root)
    _write_pitfall_record(root, ResultStore(root).records().__next__())
    return root


def _write_pitfall_record(root: Path, like: ResultRecord) -> None:
    """A protocol-pitfall record of the task (its numbers are made up: only the section's rendering is tested)."""
    change = MetricChange(reference=0.30, pitfall=0.36, difference=0.06, ci=(0.01, 0.11))
    record = PitfallRecord(
        created="2026-01-01T00:00:00+00:00", task=PitfallTask(id=like.task.id, version=like.task.version,
                                                              hash=like.task.hash),
        method="shallow", method_version="1", code_sha256="0" * 64, backbone=like.backbone.name,
        layer_setting="auto", hyperparameters={},
        pitfalls=[PitfallResult(name="test-layer", status="applied", metrics={"top1": change, "top5": change},
                                n_subjects=2, n_units=2),
                  PitfallResult(name="channels-63-vs-17", status="not-applicable", reason="17 channels only")],
        environment=like.environment)
    path = root / record.relative_path()
    path.parent.mkdir(parents=True)
    path.write_text(record.model_dump_json())


@pytest.fixture(scope="module")
def site(results, tmp_path_factory):
    return build_site(results, tmp_path_factory.mktemp("site") / "site")


@pytest.fixture(scope="module")
def rows(results):
    return build_rows(list(ResultStore(results).records()))


# --- as files ---------------------------------------------------------------------------------------------------

def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_same_records_give_the_same_bytes(results, site, tmp_path):
    again = build_site(results, tmp_path / "again")
    assert set(again) == set(site) == {PAGE, "index"}
    first, second = _tree(site["index"].parent), _tree(again["index"].parent)
    assert first.keys() == second.keys() and first == second
    assert {f"{PAGE}.html", f"{PAGE}-depth.png", "index.html", "assets/site.css", "assets/site.js"} <= set(first)


def test_a_site_from_a_results_dataset_is_the_same_and_shows_trust(results, site, tmp_path):
    """Built from an export (`leaderboard --from-dataset ... --site`), the site is byte-identical; an attested
    entry is `reproduced` in its table and with --reproduced-only the others are gone."""
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    export_results(copy, tmp_path / "export")
    loaded = write_site(load_results_dataset(tmp_path / "export"), tmp_path / "loaded")
    assert _tree(loaded["index"].parent) == _tree(site["index"].parent)

    for final in (r for r in ResultStore(copy).records() if r.method.id == "final"):  # every subject's record
        write_attestation(copy, AttestationRecord.of(final, final, tolerance=0.01, by="test", identical_trials=True),
                          final)
    outcome = CliRunner().invoke(app, ["leaderboard", "--results-dir", str(copy), "--out", str(tmp_path / "md"),
                                       "--site", str(tmp_path / "trusted"), "--reproduced-only"])
    assert outcome.exit_code == 0, outcome.output
    page = (tmp_path / "trusted" / f"{PAGE}.html").read_text()
    assert 'data-sort="reproduced">reproduced</td>' in page and 'data-sort="self-reported"' not in page
    assert 'data-sort="shallow' not in page  # the unattested entries are gone


def _links(page: str) -> list[str]:
    return re.findall(r'(?:href|src)="([^"]*)"', page)


def test_every_entry_has_its_anchor_and_every_link_stays_in_the_site(site, rows):
    page = site[PAGE].read_text()
    for row in rows:
        anchor = entry_anchor(row.entry)
        assert page.count(f'<tbody id="{anchor}">') == 1 and f'href="#{anchor}"' in page
    assert len({entry_anchor(row.entry) for row in rows}) == len(rows) == 3
    for path in site.values():
        links = _links(path.read_text())
        assert "index.html" in links  # every page links back to the index
        for link in (link for link in links if link != "data:,"):  # the empty icon: no request for favicon.ico
            assert not urlsplit(link).scheme, link  # nothing from the network
            target = unquote(urlsplit(link).path)
            assert not target or (path.parent / target).is_file(), f"{path.name} links to missing {link}"


def test_every_record_is_copied_as_the_store_holds_it(results, site, rows):
    folder = site["index"].parent
    for row in rows:
        for record in row.records:
            copy = folder / record_path(record)
            assert copy.read_bytes() == ResultStore(results).path(record.key).read_bytes()
            assert ResultRecord.from_disk(json.loads(copy.read_text())) == record


def test_the_page_shows_the_markdown_numbers_and_the_pitfall_section(site, rows):
    page = site[PAGE].read_text()
    for row in rows:
        mean, sd = row.summary["top1"]
        low, high = row.ci["top1"]
        assert f"{100 * mean:.1f} ± {100 * sd:.1f} [{100 * low:.1f}, {100 * high:.1f}]" in page
    assert page.count('<svg class="bar"') == len(rows) + sum(len(row.per_subject["top1"]) for row in rows) + 1
    assert SECTION_TITLE in page and PITFALLS["test-layer"].title in page and "not applicable: 17 channels only" in page
    assert f'<img src="{PAGE}-depth.png"' in page


def test_text_from_records_is_escaped(results, tmp_path):
    root = tmp_path / "results"
    shutil.copytree(results, root)
    store = ResultStore(root)
    for record in list(store.records()):
        store.write(record.model_copy(update={"task": record.task.model_copy(
            update={"description": "<script>alert(1)</script> & more"})}))
    page = build_site(root, tmp_path / "site")[PAGE].read_text()
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page


def test_a_rebuild_replaces_the_site_and_other_folders_are_refused(results, tmp_path):
    site = tmp_path / "site"
    build_site(results, site)
    (site / "stale.html").write_text("from an older build")
    build_site(results, site)
    assert not (site / "stale.html").exists() and (site / SITE_MARKER).is_file()
    assert oct((site / "index.html").stat().st_mode & 0o777) == oct(0o644)

    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(InvalidInputError, match="no eegbench site"):
        build_site(results, other)
    assert (other / "notes.txt").read_text() == "mine"
    with pytest.raises(InvalidInputError, match="inside the results folder"):
        build_site(results, results / "site")


def test_the_command_writes_the_site_beside_the_pages(results, tmp_path):
    from typer.testing import CliRunner

    from eegbench.cli import app

    outcome = CliRunner().invoke(app, ["leaderboard", "--results-dir", str(results), "--out", str(tmp_path / "md"),
                                       "--site", str(tmp_path / "site")])
    assert outcome.exit_code == 0, outcome.output
    assert (tmp_path / "site" / "index.html").is_file() and (tmp_path / "md" / f"{PAGE}.md").is_file()
    outcome = CliRunner().invoke(app, ["leaderboard", "--results-dir", str(results), "--out", str(tmp_path / "md2"),
                                       "--site", str(tmp_path / "md")])
    assert outcome.exit_code == 2 and not (tmp_path / "md2").exists()


# --- in headless Chromium -----------------------------------------------------------------------------------------

#: installed before any script of a page runs: uncaught errors and console errors are kept for the test
_CATCH_ERRORS = """
window.__errors = [];
window.addEventListener("error", (event) => window.__errors.push(String(event.message || event.type)), true);
const consoleError = console.error;
console.error = (...args) => { window.__errors.push(args.join(" ")); consoleError(...args); };
"""


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    # Debian's chromium (.ci/run), else the Chrome that GitHub's Ubuntu runners ship (pr.yml puts its driver on PATH)
    chromium = next(filter(None, map(shutil.which, ("chromium", "google-chrome"))), None)
    driver_binary = shutil.which("chromedriver")
    if not (chromium and driver_binary):
        pytest.skip("Debian's chromium and chromium-driver are not installed (.ci/run installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_binary))
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": _CATCH_ERRORS})
    yield driver
    driver.quit()


def _open(browser, path: Path, fragment: str = "") -> None:
    browser.get("about:blank")  # a fresh document, even where only the fragment changes
    browser.get(path.resolve().as_uri() + fragment)
    browser.get_log("browser")  # drop what an earlier page logged


def _errors(browser) -> list[str]:
    severe = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    return severe + browser.execute_script("return window.__errors")


def _visible_methods(browser, table: str = "board") -> list[str]:
    """The method key of each entry the reader sees, top to bottom."""
    return browser.execute_script(
        "return Array.from(document.getElementById(arguments[0]).tBodies)"
        ".filter((body) => body.getClientRects().length > 0)"
        ".map((body) => body.rows[0].cells[0].dataset.sort);", table)


def _click_header(browser, title: str) -> None:
    from selenium.webdriver.common.by import By

    browser.find_element(By.XPATH, f'//table[@id="board"]//th/button[starts-with(., "{title}")]').click()


def test_every_page_loads_without_errors_and_is_screenshotted(browser, site):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for name, path in sorted(site.items()):
        _open(browser, path)
        assert browser.execute_script("return document.readyState") == "complete"
        assert _errors(browser) == [], name
        images = browser.execute_script("return Array.from(document.images).map((i) => i.naturalWidth)")
        assert all(width > 0 for width in images), name  # every plot loaded from disk
        shot = ARTIFACTS / f"{name}.png"
        browser.set_window_size(1400, browser.execute_script("return document.documentElement.scrollHeight"))
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 1000
    browser.set_window_size(1400, 1000)


def test_sorting_by_a_column_reorders_the_entries(browser, site, rows):
    _open(browser, site[PAGE])
    labels = [row.entry.label for row in rows]  # best first, as built
    assert _visible_methods(browser) == labels
    _click_header(browser, "Method")
    ascending = _visible_methods(browser)
    _click_header(browser, "Method")
    descending = _visible_methods(browser)
    assert ascending == sorted(labels) and descending == sorted(labels, reverse=True)
    assert ascending != descending  # three entries, two labels: each click shows another order
    _click_header(browser, "Top-1")
    by_top1 = [row.entry.label for row in sorted(rows, key=lambda row: row.summary["top1"][0])]
    assert _visible_methods(browser) == by_top1 != labels
    assert _errors(browser) == []


def test_filtering_by_method_shows_the_matching_entries(browser, site, rows):
    from selenium.webdriver.common.by import By

    _open(browser, site[PAGE])
    box = browser.find_element(By.CSS_SELECTOR, 'form.filters input[type="search"]')
    box.send_keys("SHALLOW")
    shallow = [row.entry.label for row in rows if row.entry.method == "shallow"]
    assert _visible_methods(browser) == shallow and len(shallow) == 2
    assert browser.find_element(By.CSS_SELECTOR, "form.filters output").text == "2 of 3 shown"
    box.clear()
    box.send_keys("fin")
    assert _visible_methods(browser) == [row.entry.label for row in rows if row.entry.method == "final"]
    trust = browser.find_element(By.XPATH, '//form[@class="filters"]/label[starts-with(., "Trust")]/select')
    assert [o.get_attribute("value") for o in trust.find_elements(By.TAG_NAME, "option")] == ["", "self-reported"]
    assert _errors(browser) == []


def test_an_entry_link_opens_its_subjects_and_records(browser, site, rows):
    from selenium.webdriver.common.by import By

    row = next(row for row in rows if row.entry.method == "final")
    anchor = entry_anchor(row.entry)
    _open(browser, site[PAGE], f"#{anchor}")
    details = browser.find_element(By.ID, f"{anchor}-details")
    assert details.is_displayed()
    links = [a.get_attribute("href") for a in details.find_elements(By.TAG_NAME, "a")]
    assert len(links) == len(row.records) and all(Path(unquote(urlsplit(link).path)).is_file() for link in links)
    other = next(r for r in rows if r is not row)
    toggle = browser.find_element(By.CSS_SELECTOR, f'button[aria-controls="{entry_anchor(other.entry)}-details"]')
    toggle.click()
    assert browser.find_element(By.ID, f"{entry_anchor(other.entry)}-details").is_displayed()
    toggle.click()
    assert not browser.find_element(By.ID, f"{entry_anchor(other.entry)}-details").is_displayed()
    assert _errors(browser) == []

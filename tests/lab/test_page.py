"""The lab page in a real headless Chromium (Debian's chromium + chromedriver via Selenium):
projects, devices, progress per annotator, conflicts and models as a person would see them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from appliance.bundles.model_bundle import ModelSpec, write_model_bundle
from appliance.importer import import_paths
from appliance.sync.client import sync_project
from tests.bundles.onnx_models import contract, conv_model
from tests.lab.conftest import add_work, label_for, tablet, write_images

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser(tmp_path: Path):
    if not (CHROMIUM and DRIVER):
        pytest.skip("chromium and chromedriver not installed (apt-get install chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--user-data-dir={tmp_path / 'chrome'}",
        "--window-size=1200,1600",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.mark.slow
def test_lab_page_shows_projects_devices_progress_conflicts_and_models(
    tmp_path: Path, browser
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    from export.lab.serve import LabServer
    from tests.lab.conftest import make_config

    with LabServer(make_config(tmp_path / "lab", None)) as lab:
        a = tablet(tmp_path / "a", lab, "Kidney", "tablet-anna")
        b = tablet(tmp_path / "b", lab, "Kidney", "tablet-ben")
        add_work(a, tmp_path / "ia", 2, 3, seed=1)
        shared = write_images(tmp_path / "s", 1, seed=7)
        for i, t in enumerate((a, b)):
            import_paths(t, shared)
            img = t.find_image(shared[0].name)
            t.save_label(
                img.id,
                label_for(t, img.id, i),
                author=f"expert{i}",
                source="manual",
                seconds_spent=12.5,
            )
        for t in (a, b, a):
            sync_project(t)
        tablet(tmp_path / "c", lab, "Lung", "tablet-cleo").close()
        spec = ModelSpec("prelabel", "unet-v1", conv_model(tmp_path / "m.onnx"), contract())
        write_model_bundle(tmp_path / "m.zip", [spec])
        ws = lab.store.redeem(lab.store.create_enrollment("Kidney", "workstation", "ws")[0], None)
        assert ws is not None
        from appliance.sync.blobs import BlobChannel
        from appliance.sync.http import LabHttp

        http = LabHttp(lab.url, ws[0])
        channel = BlobChannel(http, "/api/v1/projects/Kidney")
        import hashlib

        sha = hashlib.sha256((tmp_path / "m.zip").read_bytes()).hexdigest()
        channel.upload(sha, tmp_path / "m.zip")
        http.request("POST", "/api/v1/projects/Kidney/models", json_body={"sha256": sha})
        http.close()

        browser.get(f"{lab.url}/lab")  # the key goes into the form, never into the URL
        form = browser.find_element(By.NAME, "key")
        form.send_keys("page-key\n")
        # Enter starts a navigation; wait for the old form to go and the answer to arrive,
        # or find_elements races the page load and sees the form page.
        wait = WebDriverWait(browser, 30)
        wait.until(expected_conditions.staleness_of(form))
        wait.until(expected_conditions.presence_of_element_located((By.ID, "projects")))
        projects = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#projects tbody tr")]
        assert projects[0].startswith("Kidney 3 5 0 1 1") and projects[1].startswith("Lung 0")
        devices = browser.find_element(By.ID, "devices").text
        for name in ("tablet-anna", "tablet-ben", "tablet-cleo", "workstation"):
            assert name in devices
        progress = browser.find_element(By.ID, "progress-0").text
        assert "expert0" in progress and "expert1" in progress and "a1" in progress
        conflict_rows = browser.find_elements(By.CSS_SELECTOR, "#conflicts-0 tr.conflict")
        assert len(conflict_rows) == 2
        assert {r.text.split()[-1] for r in conflict_rows} == {"tablet-anna", "tablet-ben"}
        assert "prelabel: unet-v1" in browser.find_element(By.ID, "models-0").text
        assert browser.find_element(By.ID, "conflicts-1").text == "none"
        browser.save_screenshot(str(tmp_path / "lab-page.png"))
        browser.delete_all_cookies()
        browser.get(f"{lab.url}/lab?key=page-key")
        assert "refused" in browser.page_source and "projects" not in browser.page_source
        for t in (a, b):
            t.close()

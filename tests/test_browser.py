"""The lab in a real browser, as a reader uses it: JupyterLab started as `make lab` starts it,
the widgets of 02, 12 and 14, and the HTML export of 02, in Debian's chromium.

Run alone: `HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -q -p no:cacheprovider
tests/test_browser.py` (about 2-3 minutes; screenshots of every page in build/browser/).
Skipped when chromium or chromium-driver is missing (apt-get install chromium chromium-driver).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import lab_browser as lb
import pytest

pytestmark = pytest.mark.skipif(lb.browser_paths() is None, reason=lb.INSTALL_HINT)

NB00 = "notebooks/00_welcome.ipynb"
NB02 = "notebooks/02_attention_from_first_principles.ipynb"
NB12 = "notebooks/12_interpretability_and_limits.ipynb"
NB14 = next((p.relative_to(lb.ROOT).as_posix()
             for p in sorted((lb.ROOT / "notebooks").glob("14_*.ipynb"))), None)
RUN_TIMEOUT = 480  # seconds for Run All of one notebook (smoke: under a minute on an idle machine)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    server = lb.LabServer(tmp_path_factory.mktemp("lab"))
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def page(lab, tmp_path_factory):
    driver = lb.start_chromium(lb.browser_paths(), tmp_path_factory.mktemp("chromium"))
    try:
        landed = lb.open_lab(driver, lab)
        lb.screenshot(driver, "00_lab_opened")
        driver.landed_on = landed
        yield driver
    finally:
        lb.stop_chromium(driver)


@pytest.fixture
def unchanged_on_disk(page):
    """Hash the notebooks a test opens (it appends their paths) before and after it."""
    paths: list[str] = []
    before: dict[str, str] = {}

    def track(path: str) -> str:
        paths.append(path)
        before[path] = lb.sha256(lb.ROOT / path)
        return path

    yield track
    for path in paths:
        lb.close_notebook(page, path)
    # (JupyterLab may copy a notebook it opens into .ipynb_checkpoints/, which git ignores.)
    for path in paths:
        assert lb.sha256(lb.ROOT / path) == before[path], (
            f"{path} changed on disk: opening or running it in JupyterLab must not write it "
            "(kernelspec rewrite or autosave; see jupyter/README.md)")


def committed_kernelspec(path: str) -> dict:
    return json.loads((lb.ROOT / path).read_text())["metadata"]["kernelspec"]


def open_notebook_checked(page, path: str) -> dict:
    info = lb.open_notebook(page, path)
    spec = committed_kernelspec(path)
    assert info["kernel"] == spec["name"], f"{path} got kernel {info['kernel']}, not {spec}"
    assert info["kernelspec_now"] == spec, (
        f"JupyterLab rewrote {path}'s kernelspec to {info['kernelspec_now']}: the kernel it "
        f"offers (jupyter/kernels/) must match the notebook's {spec}")
    # (The model may still turn "dirty" in memory: JupyterLab writes the running Python's
    # version into language_info. With autosave off that never reaches the disk: checked by
    # the `unchanged_on_disk` hashes.)
    return info


def open_and_run(page, path: str) -> dict:
    open_notebook_checked(page, path)
    state = lb.run_all(page, path, RUN_TIMEOUT)
    lb.screenshot(page, f"{os.path.basename(path)[:2]}_after_run_all")
    assert not state["errors"], f"{path}: cells failed: {state['errors']}"
    return state


def test_lab_opens_at_the_repository_root_on_notebook_00(page):
    assert page.landed_on.split("?")[0].endswith("/lab/tree/" + NB00)
    listing = lb.js(page, "const r = await app.serviceManager.contents.get('');"
                    "return r.content.map(x => x.name);", "", asynchronous=True)
    assert {"README.md", "docs", "results", "notebooks"} <= set(listing), listing
    assert lb.js(page, "return app.commands.isToggled('docmanager:toggle-autosave');", "") is False


def test_notebook_00_runs_without_errors_in_the_projects_kernel(page, unchanged_on_disk):
    path = unchanged_on_disk(NB00)
    info = lb.open_notebook(page, path)
    printed = lb.kernel_eval(page, path, "import sys, bigmodel_lab\n"
                             "print(sys.prefix); print(bigmodel_lab.__file__)")
    kernel_prefix, package = printed.split()
    assert kernel_prefix == sys.prefix, f"the kernel runs {kernel_prefix}, not this env"
    assert package.startswith(str(lb.ROOT)), package
    assert info["kernel"] == committed_kernelspec(path)["name"]
    open_and_run(page, path)


def _image(node) -> str | None:
    from selenium.webdriver.common.by import By

    imgs = node.find_elements(By.CSS_SELECTOR, ".widget-output img")
    return imgs[0].get_attribute("src") if imgs else None


def _changed_image(node, before: str, what: str, timeout: float = 60) -> str:
    return lb.wait_for(lambda: (src := _image(node)) and src != before and src, timeout,
                       f"the picture to change after {what}")


def _slider(node, description: str):
    from selenium.webdriver.common.by import By

    for s in node.find_elements(By.CSS_SELECTOR, ".widget-slider"):
        if s.find_element(By.CSS_SELECTOR, "label").text.strip() == description:
            return s
    raise AssertionError(f"no slider {description!r} in the widget")


def _drag(page, slider, dx: int) -> str:
    """Drag the slider's handle by dx pixels, as a reader does; return the new readout."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    readout = slider.find_element(By.CSS_SELECTOR, ".widget-readout")
    before = readout.text
    ActionChains(page).drag_and_drop_by_offset(
        slider.find_element(By.CSS_SELECTOR, ".noUi-handle"), dx, 0).perform()
    return lb.wait_for(lambda: readout.text != before and readout.text, 15,
                       f"the slider readout to leave {before}")


def test_attention_explorer_answers_the_d_k_slider_and_the_scaling_checkbox(page, unchanged_on_disk):
    from selenium.webdriver.common.by import By

    path = unchanged_on_disk(NB02)
    open_and_run(page, path)
    node = lb.cell_node(page, path, "build_explorer(")
    start = lb.wait_for(lambda: _image(node), 60, "the explorer's first picture")
    d_k = _drag(page, _slider(node, "d_k"), 40)  # up: scaling matters at large d_k
    moved = _changed_image(node, start, f"moving d_k to {d_k}")
    lb.screenshot(page, "02_d_k_moved")
    node.find_element(By.CSS_SELECTOR, ".widget-checkbox input").click()
    _changed_image(node, moved, "unticking 'divide by sqrt(d_k)'")
    lb.screenshot(page, "02_unscaled")


def _type_into(element, text: str, enter: bool = False) -> None:
    from selenium.webdriver.common.keys import Keys

    element.click()
    element.send_keys(Keys.CONTROL, "a")
    element.send_keys(text + (Keys.ENTER if enter else ""))


def test_attribution_explorer_explains_a_new_sentence(page, unchanged_on_disk):
    from selenium.webdriver.common.by import By

    path = unchanged_on_disk(NB12)
    open_notebook_checked(page, path)
    # Only what the explorer needs (nbval runs the rest): set-up, the model, the explorer.
    errors = lb.run_cells(page, path, ["lab.setup(", "load_or_finetune(", "explain.explorer("],
                          RUN_TIMEOUT)
    assert not errors, errors
    node = lb.cell_node(page, path, "explain.explorer(")
    html = lb.wait_for(lambda: node.find_elements(By.CSS_SELECTOR, ".widget-html-content"), 60,
                       "the explorer's first explanation")[0]
    before = html.text
    _type_into(node.find_element(By.CSS_SELECTOR, ".widget-text input"),
               "A dreadful, tedious film with wooden acting.")
    node.find_element(By.CSS_SELECTOR, ".widget-button").click()
    lb.wait_for(lambda: html.text != before and "dreadful" in html.text, 120,
                "an explanation of the new sentence")
    lb.screenshot(page, "12_new_sentence")


@pytest.mark.skipif(NB14 is None, reason="notebook 14 (the sampling panel) is not written yet")
def test_sampling_panel_answers_a_new_prompt_and_the_temperature(page, unchanged_on_disk):
    from selenium.webdriver.common.by import By

    path = unchanged_on_disk(NB14)
    source = (lb.ROOT / path).read_text()
    if "build_panel(" not in source:
        pytest.skip(f"{path} has no sampling panel (llm_plots.build_panel) yet")
    open_notebook_checked(page, path)
    # Run > Run All Above Selected Cell on the panel, then the panel (nbval runs the rest).
    errors = lb.run_cells(page, path, ["build_panel("], RUN_TIMEOUT, above=True)
    assert not errors, errors
    node = lb.cell_node(page, path, "build_panel(")
    start = lb.wait_for(lambda: _image(node), 120, "the panel's first picture")
    _type_into(node.find_element(By.CSS_SELECTOR, ".widget-text input"),
               "The capital of France is", enter=True)
    new_prompt = _changed_image(node, start, "a new prompt", timeout=120)
    lb.screenshot(page, "14_new_prompt")
    _drag(page, _slider(node, "temperature"), 60)
    _changed_image(node, new_prompt, "moving the temperature", timeout=120)
    lb.screenshot(page, "14_temperature_moved")


def test_html_export_of_02_is_titled_shows_images_and_reads_offline(page, tmp_path):
    # What `make book` writes for 02 (smoke profile), into a temp build dir.
    env = {**os.environ, "BIGMODEL_LAB_PROFILE": "smoke", "HF_HUB_OFFLINE": "1",
           "BIGMODEL_LAB_BUILD_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, str(lb.ROOT / "scripts" / "run_book.py"), NB02],
                          cwd=lb.ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    html_path = tmp_path / "html" / "02_attention_from_first_principles.html"
    source = html_path.read_text()
    assert "<script src=" not in source and 'rel="stylesheet" href="http' not in source, \
        "the export loads a script or stylesheet from the network"

    page.execute_cdp_cmd("Network.enable", {})
    page.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0})
    try:
        page.get(html_path.as_uri())
        time.sleep(1)
        lb.screenshot(page, "export_02_offline")
        seen = page.execute_script("""
            const imgs = [...document.querySelectorAll('.jp-OutputArea-output img')];
            const maths = [...document.querySelectorAll('math')];
            return {title: document.title,
                    images: imgs.length,
                    drawn: imgs.filter(i => i.complete && i.naturalWidth > 0
                                            && i.src.startsWith('data:image/')).length,
                    maths: maths.length,
                    maths_drawn: maths.filter(m => m.getBoundingClientRect().height > 0).length,
                    text: document.body.innerText};""")
    finally:
        page.execute_cdp_cmd("Network.emulateNetworkConditions", {
            "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    assert seen["title"] == "02 · Attention from first principles"
    assert seen["images"] >= 5 and seen["drawn"] == seen["images"], seen
    assert seen["maths"] >= 1 and seen["maths_drawn"] == seen["maths"], seen
    assert "$$" not in seen["text"] and "\\frac" not in seen["text"]
    assert "VBox(children" not in seen["text"] and "Interactive widget" in seen["text"]

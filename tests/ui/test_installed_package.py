"""Every way of installing serves the chart and the docs page: the sdist, the wheel built from
it, installed into a fresh venv, run from there, with no network and no `make ui`.

The vendored files (`ui/web/vendor`) are committed; a second test proves they are the files of
the npm packages pinned in package-lock.json whenever `make ui` has put them in node_modules.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import sysconfig
import tarfile
import time
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.redis_server import free_port
from tests.ui.test_browser import CHROMIUM, CHROMIUM_ARGS, Console

REPO = Path(__file__).resolve().parents[2]
WEB = REPO / "src" / "fxconnector" / "ui" / "web"
VENDOR = WEB / "vendor"
CHART_JS = "lightweight-charts.standalone.production.js"
#: Each vendored file and where `make ui` copies it from (package, path in the package).
VENDORED = {
    CHART_JS: ("lightweight-charts", f"dist/{CHART_JS}"),
    "LICENSE.lightweight-charts": ("lightweight-charts", "LICENSE"),
    "swagger-ui-bundle.js": ("swagger-ui-dist", "swagger-ui-bundle.js"),
    "swagger-ui-bundle.js.LICENSE.txt": ("swagger-ui-dist", "swagger-ui-bundle.js.LICENSE.txt"),
    "swagger-ui.css": ("swagger-ui-dist", "swagger-ui.css"),
    "favicon-32x32.png": ("swagger-ui-dist", "favicon-32x32.png"),
    "LICENSE.swagger-ui-dist": ("swagger-ui-dist", "LICENSE"),
    "NOTICE.swagger-ui-dist": ("swagger-ui-dist", "NOTICE"),
}
READY_WITHIN_S = 60.0


def test_the_vendored_files_are_committed_with_their_licences() -> None:
    tracked = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", str(VENDOR.relative_to(REPO))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert sorted(Path(name).name for name in tracked) == sorted(VENDORED)


def test_the_vendored_files_are_the_pinned_npm_packages() -> None:
    lock = json.loads((WEB / "package-lock.json").read_text())
    wanted = json.loads((WEB / "package.json").read_text())["dependencies"]
    for package, version in wanted.items():
        assert lock["packages"][f"node_modules/{package}"]["version"] == version  # pinned
        installed = WEB / "node_modules" / package / "package.json"
        if not installed.is_file():
            pytest.skip(f"node_modules/{package} is absent (run `make ui` to compare)")
        assert json.loads(installed.read_text())["version"] == version, "run `make ui`"
    for name, (package, path) in VENDORED.items():
        source = WEB / "node_modules" / package / path
        assert (VENDOR / name).read_bytes() == source.read_bytes(), f"{name}: run `make ui`"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from the sdist (so both must carry the vendored files)."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from hatchling.build import build_sdist; print(build_sdist(sys.argv[1]))",
            str(out),
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    (sdist,) = out.glob("fxconnector-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
        archive.extractall(out / "unpacked", filter="data")
    assert any(name.endswith(f"/ui/web/vendor/{CHART_JS}") for name in names)
    (unpacked,) = (out / "unpacked").iterdir()
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"),
            *("--no-build-isolation", "--wheel-dir", str(out), str(unpacked)),
        ],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("fxconnector-*.whl")
    with zipfile.ZipFile(built) as archive:
        shipped = {Path(n).name for n in archive.namelist() if "/ui/web/vendor/" in n}
    assert shipped == set(VENDORED)
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed (its dependencies are this venv's, by a .pth)."""
    root = tmp_path_factory.mktemp("venv")
    venv.create(root, with_pip=False)
    python = root / "bin" / "python"
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"),
            *("--no-deps", "--no-index", str(wheel)),
        ],
        check=True,
        capture_output=True,
    )
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # Dependencies from this venv; its .pth files (the editable install of the checkout) are
    # not processed from there, so `fxconnector` can only be the wheel's.
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    where = subprocess.run(
        [str(python), "-c", "import fxconnector; print(fxconnector.__file__)"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(root), where
    return root


@pytest.fixture(scope="module")
def served(installed: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The installed console script running the demo on a free port; its base URL."""
    port = free_port()
    workdir = tmp_path_factory.mktemp("run") / "var"
    log = workdir.parent / "run.log"
    with log.open("wb") as err:
        process = subprocess.Popen(
            [
                *(str(installed / "bin" / "fxconnector"), "run", "--workdir", str(workdir)),
                *("--http", f"127.0.0.1:{port}"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_WITHIN_S
        with httpx.Client(timeout=2.0) as http:
            while True:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                try:
                    if http.get(f"{base}/api/health/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(timeout=15) == 0, log.read_text()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.mark.slow
def test_the_installed_wheel_serves_the_chart_and_the_docs_page(served: str) -> None:
    with httpx.Client(base_url=served, timeout=10) as http:
        index = http.get("/")
        assert index.status_code == 200
        assert f'src="vendor/{CHART_JS}"' in index.text
        chart = http.get(f"/vendor/{CHART_JS}")
        assert chart.status_code == 200
        assert chart.content == (VENDOR / CHART_JS).read_bytes()
        docs = http.get("/api/docs")
        assert docs.status_code == 200
        for asset in re.findall(r"\.\./vendor/([\w.-]+)", docs.text):
            served_asset = http.get(f"/vendor/{asset}")
            assert served_asset.status_code == 200, asset
            assert served_asset.content == (VENDOR / asset).read_bytes(), asset


@pytest.mark.slow
@pytest.mark.browser
def test_the_installed_wheel_draws_the_chart_in_a_browser(served: str) -> None:
    if not CHROMIUM.is_file():
        pytest.skip(f"Debian's chromium is not installed at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_page()
            console = Console()
            page.on("console", console.on_console)
            page.on("pageerror", console.on_page_error)
            page.goto(f"{served}/")
            page.wait_for_function(
                "window.__fx && window.__fx.state().loads >= 1 && window.__fx.bars().length > 0",
                timeout=20_000,
            )
            page.goto(f"{served}/api/docs")
            title = page.wait_for_selector(".swagger-ui .info .title", timeout=20_000)
            assert title is not None
            assert title.inner_text().startswith("fxconnector")
            console.assert_clean()
        finally:
            browser.close()

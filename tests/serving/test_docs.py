"""/docs and /redoc work offline: their scripts come from the service itself, they pass the token
check like the spec, and they render in a real headless Chromium that can reach nothing but
127.0.0.1."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx
from fastapi import FastAPI

from socialens.serving.app import ServiceSettings
from socialens.serving.docs import ASSET_FILES, ASSETS_URL, assets_folder

TITLE = "socialens classification service"
PATHS = ("/healthz", "/v1/classify", "/v1/model")


def test_docs_pages_reference_only_the_services_own_files(serve):
    url, _, _ = serve(ServiceSettings(token="s3cret"))
    for page in ("/docs", "/redoc"):
        response = httpx.get(f"{url}{page}")  # no token: a browser opening the docs sends none
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
        links = re.findall(r"""(?:src|href)=["']([^"']+)""", response.text)
        assert links and all(link.startswith(f"{ASSETS_URL}/") for link in links), links
        assert "'/openapi.json'" in response.text or '"/openapi.json"' in response.text
        assert "https://" not in response.text and "fonts.googleapis" not in response.text
    assert '"validatorUrl": null' in httpx.get(f"{url}/docs").text  # no spec sent to validator.swagger.io
    for name, media_type in ASSET_FILES.items():
        asset = httpx.get(f"{url}{ASSETS_URL}/{name}")
        assert asset.status_code == 200, name
        assert asset.headers["content-type"].startswith(media_type)
        assert asset.content == (assets_folder() / name).read_bytes()
    assert httpx.get(f"{url}/openapi.json").status_code == 200
    assert httpx.get(f"{url}/docs/oauth2-redirect").status_code == 200
    # only those exact paths are open: the API and anything else under /docs/assets need the token
    assert httpx.get(f"{url}/v1/model").status_code == 401
    for other in (f"{ASSETS_URL}/other.js", f"{ASSETS_URL}/", f"{ASSETS_URL}/%2e%2e/socialens_model.json"):
        assert httpx.get(f"{url}{other}").status_code == 401, other
    with_token = httpx.get(f"{url}{ASSETS_URL}/other.js", headers={"Authorization": "Bearer s3cret"})
    assert with_token.status_code == 404


# ---------------------------------------------------------------- a real headless browser, offline


def rendered_dom(binary: str, profile: Path, url: str) -> tuple[str, str]:
    """(DOM after the page's scripts ran, chromium's log) with every host but 127.0.0.1 unresolvable."""
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # the network is off
        "--enable-logging=stderr",
        "--v=0",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=10000",  # lets Swagger UI / ReDoc fetch the spec and render it
        "--dump-dom",
        url,
    ]
    done = subprocess.run([binary, *flags], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, done.stderr


def assert_clean(log: str) -> None:
    assert not re.search(r"Uncaught|net::ERR_|Failed to load resource", log), log[-2000:]


def test_docs_render_in_headless_chromium_with_the_network_off(serve, serve_app, tmp_path, chromium):
    binary = chromium
    # The control: FastAPI's own pages (scripts from a CDN) stay blank in this browser, so a
    # rendered page below can only have come from the service's own files.
    cdn_url = serve_app(FastAPI(title="cdn-docs control"))
    dom, log = rendered_dom(binary, tmp_path / "cdn", f"{cdn_url}/docs")
    assert "SwaggerUIBundle is not defined" in log and 'class="title"' not in dom

    url, _, _ = serve(ServiceSettings(token="s3cret"))
    dom, log = rendered_dom(binary, tmp_path / "docs", f"{url}/docs")
    assert_clean(log)
    assert re.search(rf'<h1 class="title">{TITLE}<span>', dom), dom[:3000]
    for path in PATHS:  # one rendered operation block per endpoint
        assert f'data-path="{path}"' in dom, path
    assert '<button class="btn authorize unlocked">' in dom  # the spec's bearer scheme, to fill in

    dom, log = rendered_dom(binary, tmp_path / "redoc", f"{url}/redoc")
    assert_clean(log)
    assert re.search(rf"<h1[^>]*>{TITLE}", dom), dom[:3000]
    for path in PATHS:
        assert path in dom, path

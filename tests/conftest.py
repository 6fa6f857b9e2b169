"""Shared test fixtures. Tests run offline: no Hugging Face hub calls."""

import os
import shutil
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def shared_datasets() -> Path:
    """The real datasets beside the repository (../shared/datasets); skips when absent."""
    root = REPO_ROOT.parent / "shared" / "datasets"
    if not root.is_dir():
        pytest.skip(f"real datasets not available at {root}")
    return root


@pytest.fixture
def chromium() -> str:
    """Debian's headless Chromium (the Makefile's browser target installs it); skips when absent."""
    for candidate in (
        "/usr/bin/chromium",
        shutil.which("chromium") or "",
        shutil.which("chromium-browser") or "",
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.skip("chromium is not installed (make browser): the real-browser check is skipped")

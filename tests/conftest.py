"""Shared test fixtures. Tests run offline: no Hugging Face hub calls."""

import os
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

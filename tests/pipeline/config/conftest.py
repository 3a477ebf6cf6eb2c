"""Fixtures for the config tests."""

import pytest
import yaml

from tests.pipeline.config.files import DEMO


@pytest.fixture(scope="module")
def demo_data() -> dict:
    return yaml.safe_load(DEMO.read_text())

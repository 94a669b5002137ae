"""Session setup: offline, CPU, two threads; fixtures for the bundled data."""
import os

import pytest
import torch

from mmti_testing import CAT_TOY, TINY_SD, build_tiny_model

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope='session')
def tiny_sd():
    return TINY_SD


@pytest.fixture(scope='session')
def cat_toy():
    return CAT_TOY


@pytest.fixture
def tiny_model():
    return build_tiny_model()

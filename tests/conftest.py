"""Session setup: offline, CPU, two threads; fixtures for the bundled data."""
import logging
import os
import sys

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


@pytest.fixture(autouse=True)
def _mmengine_logs_to_live_stdout():
    """Point mmengine's console loggers at this test's sys.stdout.

    An MMLogger keeps the sys.stdout of the test that created it; pytest
    closes a capsys stream after its test, and a later log line (the dataset
    logs which images it uses) would print a "Logging error" traceback to
    stderr, failing tests that assert a clean one-line stderr.
    """
    from mmengine.logging import MMLogger
    for logger in list(MMLogger._instance_dict.values()):
        for handler in logger.handlers:
            if type(handler) is logging.StreamHandler and handler.stream not in (sys.stdout,
                                                                                sys.stderr):
                handler.stream = sys.stdout  # not setStream(): it flushes the closed one
    yield

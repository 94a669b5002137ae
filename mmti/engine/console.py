"""A quiet console: mmengine's start-up dumps and known deprecation notices
stay in the log file and off the terminal at the default log level.

Everything here goes through public means: a ``logging.Filter`` on the
console handler of the runner's logger (installed by
:meth:`QuietConsoleRunner.build_logger`, before the Runner logs anything),
a filter on transformers' import-time logger, and the libraries' own
switches for their loading bars. With ``log_level='DEBUG'`` the console
shows everything again.
"""
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from mmengine.logging import MMLogger
from mmengine.runner import Runner

# What the console leaves out (the log file keeps it): mmengine's environment
# and config dumps and hook table (the config is also saved in the work dir),
# and deprecation notices about mmengine's own internals, which users can
# do nothing about.
CONSOLE_NOISE = (
    'Hooks will be executed in the following order',
    'Config:\n',
    '\n' + '-' * 60 + '\nSystem environment:',
    '"FileClient" will be deprecated',
    '"HardDiskBackend" is the alias',
    'Distributed training is not used, all SyncBatchNorm',
    'Exp name: ',  # LoggerHook's reminder every 100 steps; the summary names the work dir
)
# transformers' notice that an image processor falls back to its PIL backend
# (torchvision is not a dependency; the PIL backend is what mmti wants).
LIBRARY_NOISE = ('requires torchvision (not installed); falling back to',)


class ConsoleNoiseFilter(logging.Filter):
    """Drop known noise and records below ``level`` (the console's level).

    The level travels with the filter, so a handler that copies the filters
    (tqdm's logging redirect during training) keeps the console's level too.
    """

    def __init__(self, level: int = logging.INFO, noise: tuple[str, ...] = CONSOLE_NOISE):
        super().__init__()
        self.level = level
        self.noise = noise

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.level:
            return False
        message = str(record.msg)
        return not any(n in message for n in self.noise)


class CpuEnvironmentFilter(logging.Filter):
    """On a machine without CUDA, mmengine's environment dump says
    ``GPU number: <processes>``; say what it counts instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and 'GPU number: ' in record.msg:
            record.msg = re.sub(r'GPU number: (\d+)', r'CPU processes: \1 (no GPU)', record.msg)
        return True


def is_console_handler(handler: logging.Handler) -> bool:
    """The handler that writes to the terminal (not a log file)."""
    return (isinstance(handler, logging.StreamHandler)
            and not isinstance(handler, logging.FileHandler)
            and getattr(handler, 'stream', None) in (sys.stdout, sys.stderr))


def quiet_console(logger: logging.Logger) -> None:
    """Install the console filter on ``logger``'s terminal handler(s).

    Nothing is filtered when the console shows DEBUG: the user asked for all.
    """
    if not torch.cuda.is_available() and not any(
            isinstance(f, CpuEnvironmentFilter) for f in logger.filters):
        logger.addFilter(CpuEnvironmentFilter())
    for handler in logger.handlers:
        if (is_console_handler(handler) and handler.level > logging.DEBUG
                and not any(isinstance(f, ConsoleNoiseFilter) for f in handler.filters)):
            handler.addFilter(ConsoleNoiseFilter(handler.level))


@contextmanager
def warnings_only() -> Iterator[None]:
    """Console shows only warnings and errors of the current mmengine logger
    for a while (a throwaway build whose INFO lines the real one repeats)."""
    logger = MMLogger.get_current_instance()
    only = ConsoleNoiseFilter(logging.WARNING, ())
    handlers = [h for h in logger.handlers if is_console_handler(h)]
    for handler in handlers:
        handler.addFilter(only)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(only)


def quiet_library_notices(verbose: bool = False) -> None:
    """Hide transformers' backend notices and the libraries' weight-loading bars.

    Call before the models are imported (the notices come at import time).
    """
    if verbose:
        return
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging
    noise = ConsoleNoiseFilter(logging.NOTSET, LIBRARY_NOISE)
    import_logger = transformers_logging.get_logger('transformers.utils.import_utils')
    if not any(isinstance(f, ConsoleNoiseFilter) for f in import_logger.filters):
        import_logger.addFilter(noise)
    # "Loading weights: 100%": one bar per model part, before training starts.
    transformers_logging.disable_progress_bar()
    diffusers_logging.disable_progress_bar()


class QuietConsoleRunner(Runner):
    """mmengine's Runner whose console leaves out :data:`CONSOLE_NOISE`.

    The filter must be in place before ``Runner.__init__`` logs the
    environment, config and hook table, so it goes in here, where the
    Runner builds its logger.
    """

    def build_logger(self, *args, **kwargs):
        logger = super().build_logger(*args, **kwargs)
        quiet_console(logger)
        return logger

"""torchrun for tools/dist_train.sh: refused input ends as it does in one process.

Each rank of a refused run prints its one-line reason and exits with status 2;
torchrun would then stop the other ranks, log each exit and add a page of
``ChildFailedError`` traceback, and exit 1. Here, when the first rank to fail
exited 2 (or was interrupted), the launcher exits with that status and adds
nothing; any other failure keeps torchrun's whole report, which names every
rank's exit. Ctrl-C or SIGTERM reach the launcher too: the ranks say what was
kept and how to continue, the launcher exits 128 + the signal, as a shell does.
"""
import logging
import sys

from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import parse_args, run

from mmti.utils import INTERRUPTED, USAGE_ERROR

# Logs each rank's exit and the stopping of the others, which the report of a
# real failure repeats (and a refused run does not need).
_RANK_EXITS = 'torch.distributed.elastic.multiprocessing.api'


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.getLogger(_RANK_EXITS).setLevel(logging.CRITICAL)
    try:
        run(args)
    except SignalException as err:
        sys.exit(128 + int(err.sigval))
    except ChildFailedError as err:
        _, first = err.get_first_failure()
        if first.exitcode in (USAGE_ERROR, INTERRUPTED):
            sys.exit(first.exitcode)
        raise


if __name__ == '__main__':
    main()

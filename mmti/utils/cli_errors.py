"""How every mmti command line answers user error: one line, exit status 2.

A user who mistypes a path or a config key should read what is wrong and how
to fix it, not a traceback. ``--debug`` brings the traceback back for bug
reports.
"""
import sys
from collections.abc import Callable, Sequence

#: Exit status for refused input (argparse uses the same).
USAGE_ERROR = 2
#: Exit status after Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED = 130


class UserError(Exception):
    """Input the user can fix; the message names the problem and the fix."""


class NonFiniteRenderError(UserError):
    """Sampling produced NaN or inf pixels: the rows make the model compute them.

    Here, not beside the sampler, so that the training hooks that skip such a
    render can name it without loading the model classes."""


# Errors that mean "the input is wrong" when they escape a command: bad
# values, missing or unreadable files, unknown config keys.
USER_ERRORS = (UserError, ValueError, OSError, KeyError, TypeError, UnicodeDecodeError,
               SyntaxError)


def one_line(err: BaseException) -> str:
    """The first non-empty line of an error's message (or its type name)."""
    if isinstance(err, KeyError) and len(err.args) == 1:
        text = str(err.args[0])  # KeyError's str() adds quotes
    else:
        text = str(err)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def run_cli(prog: str, main: Callable[[list[str]], object], argv: Sequence[str] | None = None,
            on_interrupt: Callable[[], str] | None = None) -> None:
    """Run ``main(argv)``; user errors exit with status 2 and one line on stderr.

    Args:
        prog: Name shown before the message, e.g. ``'tools/train.py'``.
        main: The command's body; it receives ``argv`` without ``--debug``.
        argv: Arguments (default ``sys.argv[1:]``).
        on_interrupt: Returns the line to print after Ctrl-C (what is kept,
            how to continue); default: "interrupted".
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = '--debug' in argv
    argv = [a for a in argv if a != '--debug']
    try:
        main(argv)
    except KeyboardInterrupt:
        if debug:
            raise
        message = on_interrupt() if on_interrupt else 'interrupted'
        print(f'{prog}: {message}', file=sys.stderr)
        raise SystemExit(INTERRUPTED) from None
    except USER_ERRORS as err:
        if debug:
            raise
        print(f'{prog}: error: {one_line(err)} (--debug shows the traceback)', file=sys.stderr)
        raise SystemExit(USAGE_ERROR) from None


def prog_name(script: str) -> str:
    """What a command calls itself: its console entry point (``mmti-train``) when
    run as one, else ``script`` (``tools/train.py``) as the checkout runs it."""
    name = sys.argv[0].rsplit('/', 1)[-1] if sys.argv else ''
    return name if name.startswith('mmti-') else script


def command_prefix(prog: str) -> list[str]:
    """The words that start ``prog`` again.

    ``['mmti-train']`` for an entry point, ``['python', 'tools/train.py']`` for a script.
    """
    return [prog] if prog.startswith('mmti-') else ['python', prog]

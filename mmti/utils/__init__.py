from .cli_errors import INTERRUPTED, USAGE_ERROR, USER_ERRORS, UserError, one_line, run_cli

__all__ = ['INTERRUPTED', 'USAGE_ERROR', 'USER_ERRORS', 'UserError', 'one_line', 'run_cli']

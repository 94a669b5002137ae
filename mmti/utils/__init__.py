from .cli_errors import INTERRUPTED, USAGE_ERROR, USER_ERRORS, UserError, one_line, run_cli
from .setup_env import register_all_modules

__all__ = ['INTERRUPTED', 'USAGE_ERROR', 'USER_ERRORS', 'UserError', 'one_line',
           'register_all_modules', 'run_cli']

from .cli_errors import (INTERRUPTED, USAGE_ERROR, USER_ERRORS, NonFiniteRenderError, UserError,
                         command_prefix, one_line, prog_name, run_cli)
from .cli_options import ConfigOptionsAction, add_cfg_options, check_device
from .setup_env import register_all_modules

__all__ = ['ConfigOptionsAction', 'INTERRUPTED', 'NonFiniteRenderError', 'USAGE_ERROR',
           'USER_ERRORS', 'UserError', 'add_cfg_options', 'check_device', 'command_prefix',
           'one_line', 'prog_name', 'register_all_modules', 'run_cli']

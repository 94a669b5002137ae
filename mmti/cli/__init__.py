"""mmti's command lines: ``tools/<name>.py`` in a checkout, ``mmti-<name>`` once installed."""

"""The command-line tools: ``tools/<name>.py`` in a checkout, ``mimbench-<name>`` once installed."""

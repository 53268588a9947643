"""Every GPU check in one run of under 8 minutes, its figures written as JSON: for the short GPU slots.

The code is mimbench/cli/device_check.py; installed, it is also the `mimbench-device-check` command.
"""
from mimbench.cli.device_check import main

if __name__ == '__main__':
    main()

"""Every GPU check in one run of under 8 minutes, its figures written as JSON: for the short GPU slots.

The code is mimbench/cli/device_check.py; installed, it is also the `mimbench-device-check` command.
"""
import sys
from pathlib import Path

# this checkout's mimbench, not another one an editable install points at
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mimbench.cli.device_check import main  # noqa: E402

if __name__ == '__main__':
    main()

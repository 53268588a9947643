"""Export a pretrained encoder as a timm VisionTransformer checkpoint.

The code is mimbench/cli/export.py; installed, it is also the `mimbench-export` command.
"""
import sys
from pathlib import Path

# this checkout's mimbench, not another one an editable install points at
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mimbench.cli.export import main  # noqa: E402

if __name__ == '__main__':
    main()

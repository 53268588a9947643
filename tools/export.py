"""Export a pretrained encoder as a timm VisionTransformer checkpoint.

The code is mimbench/cli/export.py; installed, it is also the `mimbench-export` command.
"""
from mimbench.cli.export import main

if __name__ == '__main__':
    main()

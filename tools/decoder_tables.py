"""The decoder-depth and decoder-width comparison (MAE Table 1a and 1b) as one markdown file with a plot.

The code is mimbench/cli/decoder_tables.py; installed, it is also the `mimbench-decoder-tables` command.
"""
from mimbench.cli.decoder_tables import main

if __name__ == '__main__':
    main()

"""Packaging is declared in setup.cfg. This file only ships configs/ inside the built package (mimbench/configs),
so that an installed mimbench runs its configs by name from any folder (mimbench/paths.py)."""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithConfigs(build_py):
    def run(self):
        super().run()
        shutil.copytree(Path(__file__).resolve().parent / 'configs', Path(self.build_lib) / 'mimbench' / 'configs',
                        dirs_exist_ok=True, ignore=shutil.ignore_patterns('__pycache__'))


setup(cmdclass={'build_py': BuildPyWithConfigs})

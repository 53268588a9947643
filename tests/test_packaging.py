"""A plain (non-editable) install works outside the checkout: the configs ship inside the package, configs run
by name from any folder, and the tools are importable commands."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_an_installed_package_runs_configs_by_name_from_another_folder(tmp_path):
    target, elsewhere = tmp_path / 'site', tmp_path / 'elsewhere'
    elsewhere.mkdir()
    subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-deps', '--no-build-isolation',
                    '--no-compile', '--target', str(target), str(REPO)], check=True, capture_output=True)
    assert (target / 'mimbench/configs/ablation/micro.py').is_file()
    assert (target / 'bin/mimbench-train').is_file()
    env = dict(os.environ, PYTHONPATH=str(target), OMP_NUM_THREADS='1')

    def run(*args):
        out = subprocess.run([sys.executable, *args], cwd=elsewhere, env=env, capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout + out.stderr

    where = run('-c', 'import mimbench, mimbench.paths as p; print(mimbench.__file__, p.configs_dir())')
    assert where.split() == [str(target / 'mimbench/__init__.py'), str(target / 'mimbench/configs')]
    run('-m', 'mimbench.cli.train', 'mae_micro_cifar10', '--max-iters', '2', '--work-dir', 'run', '--cfg-options',
        'train_dataloader.dataset.type=SyntheticImages', 'train_dataloader.dataset.num_images=32',
        'train_dataloader.dataset.image_size=32', 'train_dataloader.batch_size=16')
    assert (elsewhere / 'run/iter_2.pth').is_file()
    listing = run('-m', 'mimbench.cli.ablate', '--axis', 'method', '--values', 'mae', '--seeds', '1', '--dry-run',
                  '--results', 'results')
    from mimbench.ablation.axes import get_axis
    from mimbench.ablation.cells import Scale, make_cell
    micro = Scale.load('micro')
    key = make_cell(micro, get_axis('method'), get_axis('method').values(micro.context(), ['mae'])[0], 0).key
    assert 'method=mae seed 0' in listing and key in listing     # a cell's identity does not depend on where


def test_each_tool_script_runs_the_mimbench_of_its_own_checkout(tmp_path):
    # a second checkout (a study's frozen copy) beside an editable install of the first: its tools/*.py must
    # not silently run the installed tree's code
    clone = tmp_path / 'clone'
    (clone / 'tools').mkdir(parents=True)
    (clone / 'mimbench/cli').mkdir(parents=True)
    (clone / 'mimbench/__init__.py').write_text('')
    (clone / 'mimbench/cli/__init__.py').write_text('')
    tools = sorted((REPO / 'tools').glob('*.py'))
    for tool in tools:
        (clone / 'tools' / tool.name).write_text(tool.read_text())
        (clone / f'mimbench/cli/{tool.stem}.py').write_text('def main():\n    print(__file__)\n')
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    for tool in tools:
        out = subprocess.run([sys.executable, str(clone / 'tools' / tool.name)], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.stdout.strip() == str(clone / f'mimbench/cli/{tool.stem}.py'), (tool.name, out.stderr[-500:])

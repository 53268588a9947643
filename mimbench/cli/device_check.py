"""Every GPU check in one run of under 8 minutes, its figures written as JSON: for the short GPU slots.

Here, once (a CPU machine with pip and the CIFAR-10 folder):

    python tools/device_check.py --prepare            # -> .devcheck/: a CIFAR-10 subset, the whole of it packed,
                                                      #    and the wheels

On the GPU machine (torch and the rest are there; mmengine and its small dependencies are not, timm perhaps at
another version, and there is no package index, so they travel as wheels in .devcheck/whl), from the
repository root:

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .devcheck/whl/*.whl \\
        && PYTHONPATH=/tmp/site python3 tools/device_check.py --out $OUT

Steps, each in its own process with its own time limit, so one failure never hides the rest; the JSON
(``<out>/device_check.json``, rewritten after every step) and the full log (``device_check.log``) say what
passed, what failed and why:
  1. env: torch, timm, mmengine versions, the GPU;
  2. tests: the tests marked ``cuda`` (they skip on CPU machines);
  3. bench_*: MAE, CAE and BEiT-style ViT-B/16 train steps in bf16 on synthetic images (tools/benchmark.py),
     MAE also compiled;
  4. cell: one micro_bf16_device ablation cell end to end (pretraining on the device data path + every
     default evaluation) on the CIFAR-10 subset (its own scale, 'devcheck': 5,000 training images), on the GPU.

The schedule study's 100-epoch cells (scale micro_bf16_device_100ep) need the whole dataset there: the folder's
JPEGs are 88 MiB as a tar, over what a device call carries beside the checkout (64 MiB), but their headers
repeat, so ``.devcheck/cifar10_full.tar.xz`` holds every file, byte for byte, in about 18 MiB. The command that
runs them there and brings their records home is in docs/performance.md ("On a GPU").
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from mimbench.paths import CHECKOUT

REPO = CHECKOUT      # the checkout: this check runs tools/ and configs/ from it
PREPARED = REPO / '.devcheck'
# mmengine and what it needs that the GPU image lacks (its other needs, numpy, pyyaml, rich, matplotlib and
# opencv, are there), and timm at the version tested here (the image's own may predate what the encoder uses:
# pos_embed='none', a VisionTransformer that sets in_chans); versions as installed here
WHEELS = ('mmengine', 'addict', 'yapf', 'termcolor', 'platformdirs', 'timm')
SUBSET = dict(train=500, test=100)       # images per class
FULL_PACK = PREPARED / 'cifar10_full.tar.xz'


def pack_dataset(data_root: Path, dest: Path) -> Path:
    """Write ``data_root``'s ``train`` and ``test`` folders, every file byte for byte, into the xz-compressed tar
    ``dest`` under the top folder ``cifar10/`` (``tar xJf dest -C DIR`` gives ``DIR/cifar10/{train,test}``), in a
    sorted order so that the same folder packs to the same members. Returns ``dest``."""
    import tarfile
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + '.tmp')
    with tarfile.open(tmp, 'w:xz', preset=6) as tar:
        for split in ('train', 'test'):
            files = sorted(p for p in (data_root / split).rglob('*') if p.is_file())
            if not files:
                raise SystemExit(f'error: no images under {data_root / split}: give --data-root')
            for path in files:
                tar.add(path, arcname=f'cifar10/{path.relative_to(data_root).as_posix()}')
    os.replace(tmp, dest)
    return dest


def prepare(data_root: Path) -> None:
    """Write ``.devcheck/cifar10/{train,test}/<class>/`` (a subset of the CIFAR-10 folder, ~7 MB), the whole
    folder packed (:func:`pack_dataset`, ~18 MiB) and ``.devcheck/whl/`` (the wheels above, for Python 3.12)."""
    from importlib.metadata import version
    for split, per_class in SUBSET.items():
        classes = sorted(p for p in (data_root / split).iterdir() if p.is_dir())
        if not classes:
            sys.exit(f'error: no class folders under {data_root / split}: give --data-root')
        for folder in classes:
            dest = PREPARED / 'cifar10' / split / folder.name
            dest.mkdir(parents=True, exist_ok=True)
            for image in sorted(folder.iterdir())[:per_class]:
                shutil.copyfile(image, dest / image.name)
    whl = PREPARED / 'whl'
    whl.mkdir(parents=True, exist_ok=True)
    pins = [f'{name}=={version(name)}' for name in WHEELS]
    subprocess.run([sys.executable, '-m', 'pip', 'download', '-q', '--no-deps', '--only-binary=:all:',
                    '--python-version', '3.12', '--implementation', 'cp', '--platform', 'manylinux2014_x86_64',
                    '-d', str(whl), *pins], check=True)
    if not FULL_PACK.is_file():       # a minute of xz: packed once
        pack_dataset(data_root, FULL_PACK)
    size = sum(f.stat().st_size for f in PREPARED.rglob('*') if f.is_file()) / 2 ** 20
    print(f'wrote {PREPARED} ({size:.1f} MiB): carry it (device run carry=[".devcheck"])')


class Check:
    """Runs the steps, keeping the JSON and the log up to date after each."""

    def __init__(self, out: Path):
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        self.log = open(out / 'device_check.log', 'a')
        self.report = dict(started=time.strftime('%Y-%m-%d %H:%M:%S %Z'), steps={})
        self.start = time.perf_counter()

    def run(self, name: str, cmd: list[str], timeout: float, parse=None) -> dict:
        print(f'=== {name}: {" ".join(cmd)}', flush=True)
        self.log.write(f'\n=== {name}: {" ".join(cmd)}\n')
        self.log.flush()
        t = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                                  env=dict(os.environ, PYTHONUNBUFFERED='1'))
            rc, text = proc.returncode, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as err:
            rc = 'timeout'
            text = ((err.stdout or b'').decode(errors='replace') if isinstance(err.stdout, bytes)
                    else err.stdout or '') + f'\n[stopped after {timeout:.0f} s]'
        self.log.write(text)
        self.log.flush()
        step = dict(ok=rc == 0, rc=rc, seconds=round(time.perf_counter() - t, 1), tail=text[-1500:])
        if rc == 0 and parse is not None:
            try:
                step['result'] = parse(text)
            except Exception as err:  # noqa: BLE001 - a parse failure is reported, not raised
                step['ok'], step['parse_error'] = False, f'{type(err).__name__}: {err}'
        self.report['steps'][name] = step
        self.report['seconds'] = round(time.perf_counter() - self.start, 1)
        (self.out / 'device_check.json').write_text(json.dumps(self.report, indent=2) + '\n')
        print(f'    {"ok" if step["ok"] else "FAILED"} in {step["seconds"]} s', flush=True)
        return step


ENV = ('import json, torch, timm, mmengine, mimbench; p = torch.cuda.get_device_properties(0); '
       'print(json.dumps(dict(torch=torch.__version__, timm=timm.__version__, mmengine=mmengine.__version__, '
       'cuda=torch.version.cuda, gpu=p.name, memory_gib=round(p.total_memory / 2**30, 1), '
       'capability=list(torch.cuda.get_device_capability(0)))))')


def _last_json(text: str):
    return json.loads(next(line for line in reversed(text.splitlines()) if line.startswith('{')))


def _pytest_summary(text: str) -> str:
    return next(line.strip('= ') for line in reversed(text.splitlines())
                if ' in ' in line and any(w in line for w in ('passed', 'failed', 'skipped', 'error')))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--prepare', action='store_true', help='write .devcheck/ here (data subset and wheels)')
    p.add_argument('--data-root', default=str(REPO.parent / 'shared' / 'data' / 'cifar10'),
                   help='the CIFAR-10 folder --prepare takes the subset from')
    p.add_argument('--out', help='where the JSON and the log go (on the GPU machine: $OUT)')
    p.add_argument('--skip', nargs='*', default=[], help='steps to leave out: env tests bench cell')
    args = p.parse_args(argv)
    if args.prepare:
        return prepare(Path(args.data_root))
    if not args.out:
        p.error('give --out DIR (or --prepare)')
    py = sys.executable
    check = Check(Path(args.out))
    if 'env' not in args.skip:
        check.run('env', [py, '-c', ENV], 60, _last_json)
    if 'tests' not in args.skip:
        check.run('tests', [py, '-m', 'pytest', '-q', '-m', 'cuda', '-p', 'no:cacheprovider', 'tests'], 150,
                  _pytest_summary)
    if 'bench' not in args.skip:
        for name, config, batch, extra, limit in (
                ('bench_mae_vitb', 'configs/mae_vitb.py', 256, [], 90),
                ('bench_mae_vitb_compiled', 'configs/mae_vitb.py', 256, ['--compile'], 150),
                ('bench_cae_vitb', 'configs/cae_vitb.py', 128, ['--pixel-target'], 90),
                ('bench_beit_vitb', 'configs/beit_vitb.py', 128, ['--pixel-target'], 90)):
            json_path = Path(args.out) / f'{name}.tmp.json'
            step = check.run(name, [py, 'tools/benchmark.py', config, '--device', 'cuda', '--precision', 'bfloat16',
                                    '--batch-size', str(batch), '--iters', '8', '--warmup', '3',
                                    '--json', str(json_path), *extra], limit)
            if step['ok'] and json_path.is_file():
                step['result'] = json.loads(json_path.read_text())
                json_path.unlink()
                (Path(args.out) / 'device_check.json').write_text(json.dumps(check.report, indent=2) + '\n')
    if 'cell' not in args.skip:
        work = Path('/tmp/devcheck')
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        # the subset is another dataset, so another scale: the micro_bf16_device cells on 5,000 images
        scale = work / 'devcheck.py'
        scale.write_text(f"_base_ = ['{REPO / 'configs/ablation/micro_bf16_device.py'}']\nscale = 'devcheck'\n"
                         f"num_train_images = {SUBSET['train'] * 10}\nnum_test_images = {SUBSET['test'] * 10}\n")
        step = check.run('cell', [py, 'tools/ablate.py', '--scale', str(scale), '--axis', 'method',
                                  '--values', 'mae', '--seeds', '1', '--data-root', str(PREPARED / 'cifar10'),
                                  '--results', str(work / 'results'), '--work-root', str(work / 'cells')], 200)
        records = sorted((work / 'results' / 'ablation' / 'devcheck').glob('*.json'))
        if records:
            record = json.loads(records[0].read_text())
            step['result'] = {k: record.get(k) for k in ('metrics', 'pretrain', 'extract_seconds',
                                                          'driver_seconds')}
        (Path(args.out) / 'device_check.json').write_text(json.dumps(check.report, indent=2) + '\n')
    failed = [n for n, s in check.report['steps'].items() if not s['ok']]
    print(f'device check: {len(check.report["steps"]) - len(failed)} of {len(check.report["steps"])} steps ok'
          + (f'; failed: {", ".join(failed)}' if failed else '') + f' ({check.report["seconds"]} s)')


if __name__ == '__main__':
    main()

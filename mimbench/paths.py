"""Where the package finds its configs: in a checkout, its ``configs/``; installed, the copy shipped inside the
package (``mimbench/configs``, put there when the wheel is built: setup.py). Paths in configs and commands keep
the checkout's spelling (``configs/mae_micro_cifar10.py``), so the same commands work either way."""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
CHECKOUT = PACKAGE.parent      # the repository root when running from a checkout


def in_checkout() -> bool:
    """Whether this package runs from a checkout (its ``configs/`` beside it), not from an install."""
    return (CHECKOUT / 'configs' / '_base_').is_dir()


def configs_dir() -> Path:
    """The checkout's ``configs/`` when this package runs from one, else the copy inside the package."""
    return CHECKOUT / 'configs' if in_checkout() else PACKAGE / 'configs'


def resolve_config(path: str | os.PathLike) -> str:
    """A config file: ``path`` as given when it exists; else ``configs/<...>`` or a bare name
    (``mae_micro_cifar10``, ``eval/linear_micro``) inside :func:`configs_dir`. Unchanged when none exists,
    so that the caller's error names what the user typed."""
    path = str(path)
    if os.path.exists(path):
        return path
    rel = path[len('configs/'):] if path.startswith('configs/') else path
    candidate = configs_dir() / rel
    if not candidate.suffix:
        candidate = candidate.with_suffix('.py')
    return str(candidate) if candidate.is_file() else path


def config_name(path: str | os.PathLike) -> str:
    """How records name a config: ``configs/<...>`` for one inside :func:`configs_dir`, else the path."""
    try:
        return 'configs/' + Path(path).resolve().relative_to(configs_dir().resolve()).as_posix()
    except ValueError:
        return str(path)

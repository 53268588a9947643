"""The worked example in docs/add_a_component.md runs as written."""
import re
import sys
from pathlib import Path

import torch

from mimbench.engine.runner import load_config
from mimbench.registry import MASKERS, MODELS

REPO = Path(__file__).resolve().parents[1]
GUIDE = (REPO / 'docs/add_a_component.md').read_text()


def python_blocks():
    return re.findall(r'```python\n(.*?)```', GUIDE, flags=re.S)


def test_the_guide_masker_registers_and_keeps_the_masker_contract(tmp_path, monkeypatch):
    class_code, usage, config = python_blocks()
    (tmp_path / 'my_maskers.py').write_text(class_code)
    monkeypatch.syspath_prepend(str(tmp_path))
    MASKERS.module_dict.pop('ColumnMasker', None)
    sys.modules.pop('my_maskers', None)
    namespace = {}
    exec(class_code + '\n' + usage, namespace)
    masker = namespace['masker']
    mask = masker(3, generator=torch.Generator().manual_seed(0))
    columns = mask.view(3, 8, 8)
    assert torch.all(columns.all(1) == columns.any(1))              # whole columns, nothing else
    assert torch.equal(mask, masker(3, generator=torch.Generator().manual_seed(0)))

    MASKERS.module_dict.pop('ColumnMasker', None)
    (tmp_path / 'my_columns.py').write_text(config.replace("'configs/", f"'{REPO}/configs/"))
    cfg = load_config(str(tmp_path / 'my_columns.py'))
    model = MODELS.build(cfg.model)
    assert type(model.masker).__name__ == 'ColumnMasker' and model.masker.num_masked == 48
    assert torch.isfinite(model.loss(torch.randn(2, 3, 32, 32))['loss'])

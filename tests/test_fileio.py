"""Atomic writes: a reader sees the old file or the whole new one, never a part, and no temporary is left."""
import errno
import os

import pytest

from mimbench.fileio import atomic_path, read_json, save_figure, write_json_atomic, write_text_atomic


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / 'table.md'
    write_text_atomic(target, 'old\n')
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('half of the new')
            raise RuntimeError('writer died')
    assert target.read_text() == 'old\n'
    assert [p.name for p in tmp_path.iterdir()] == ['table.md']


def test_the_temporary_keeps_the_suffix_so_savefig_picks_the_format(tmp_path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig = plt.figure(figsize=(1, 1))
    with atomic_path(tmp_path / 'plots' / 'curve.png') as tmp:
        assert tmp.suffix == '.png' and tmp.parent == tmp_path / 'plots'
        fig.savefig(tmp)
    plt.close(fig)
    assert (tmp_path / 'plots' / 'curve.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert len(list((tmp_path / 'plots').iterdir())) == 1


def test_json_round_trip_and_missing_file(tmp_path):
    write_json_atomic(tmp_path / 'r.json', {'b': 1, 'a': [1.5, 'x']})
    assert read_json(tmp_path / 'r.json') == {'a': [1.5, 'x'], 'b': 1}
    assert read_json(tmp_path / 'absent.json') is None


def test_written_files_get_the_usual_mode_not_mkstemps_owner_only(tmp_path):
    import os
    mask = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / 'a.md', 'x')
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_figure_saved_without_suffix_becomes_png_and_is_closed(tmp_path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig = plt.figure()
    written = save_figure(fig, tmp_path / 'curve')
    assert written == tmp_path / 'curve.png'
    assert written.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert not plt.fignum_exists(fig.number)
    assert save_figure(plt.figure(), tmp_path / 'curve.pdf').read_bytes()[:4] == b'%PDF'


@pytest.mark.parametrize('hard_links', [True, False], ids=['hard links', 'no hard links (FAT, FUSE)'])
def test_an_exclusive_write_leaves_a_file_that_appeared_meanwhile_and_says_so(tmp_path, monkeypatch, hard_links):
    if not hard_links:
        def no_links(src, dst):
            raise OSError(errno.ENOTSUP, 'hard links not supported')
        monkeypatch.setattr(os, 'link', no_links)
    target = tmp_path / 'basis.pth'
    with atomic_path(target, exclusive=True) as tmp:
        tmp.write_text('first')
    with pytest.raises(FileExistsError):
        with atomic_path(target, exclusive=True) as tmp:
            tmp.write_text('second')
    assert target.read_text() == 'first'
    assert [p.name for p in tmp_path.iterdir()] == ['basis.pth']

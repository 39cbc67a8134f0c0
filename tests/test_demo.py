"""The demo end to end with tiny settings, and the report table."""
import json
import math

from pipeline.report import comparison_table, iou_table
import run_demo


def test_demo_runs_end_to_end(tmp_path, capsys):
    run_demo.main(['--out', str(tmp_path), '--n_images', '15', '--epochs', '1', '--crop', '96',
                   '--clims_epochs', '1', '--irn_epochs', '1', '--seg_iters', '2', '--device', 'cpu'])
    out = capsys.readouterr().out
    assert 'QA-CLIMS CAM' in out and 'pseudo mask' in out and 'Demo finished' in out
    assert (tmp_path / 'work_space' / 'res50_qa_clims.safetensors').is_file()
    ws = tmp_path / 'work_space'
    result = json.loads((ws / 'eval_cam.json').read_text())
    assert 0.0 <= result['miou'] <= 1.0 and len(result['sweep']) == 55
    sem = json.loads((ws / 'eval_sem_seg.json').read_text())
    assert 0.0 <= sem['miou'] <= 1.0
    assert len(list((ws / 'sem_seg_color').glob('*.png'))) == sem['n_images']
    assert len(sorted((tmp_path / 'overlays').glob('*.png'))) == 4
    assert len(sorted((tmp_path / 'overlays_sem_seg').glob('*.png'))) == 4
    assert 'DeepLab' in out
    assert 0.0 <= json.loads((ws / 'eval_seg.json').read_text())['miou'] <= 1.0


def test_iou_table_marks_and_skips_absent_classes():
    table = iou_table(['background', 'cat', 'dog'], [0.5, math.nan, 0.25], 0.375)
    assert '-' in table.splitlines()[2] and '37.50' in table.splitlines()[-1]
    short = iou_table(['background', 'cat', 'dog'], [0.5, None, 0.25], 0.375, skip_absent=True)
    assert 'cat' not in short and 'dog' in short


def test_comparison_table_rows():
    columns = [('CAM', [0.5, None, 0.25], 0.375), ('pseudo mask', [0.6, None, 0.2], 0.4)]
    table = comparison_table(['background', 'cat', 'dog'], columns)
    lines = table.splitlines()
    assert 'pseudo mask' in lines[0] and len(lines) == 4
    assert lines[-1].split() == ['mIoU', '37.50', '40.00']

"""The VQA step as a tool script: ``run_sample.py --vqa_pass True`` with the same flags.

    python tools/run_vqa.py --voc12_root VOC2012 --work_space ws --vqa_model blip-vqa-capfilt-large \\
        --vqa_list train_aug --vqa_fg_file vqa_fg.json --vqa_bg_file vqa_bg.json
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import run_sample  # noqa: E402

if __name__ == '__main__':
    run_sample.main(sys.argv[1:] + ['--vqa_pass', 'True'])

"""Logging to the console and to the experiment folder."""
import logging
import os
import sys

LOGGER_NAME = 'qa_clims'


def setup_logging(work_space, log_name='run', is_main=True):
    """Log INFO to stdout and to ``work_space/<log_name>.log`` (main process only)."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    if not is_main:
        logger.addHandler(logging.NullHandler())
        return logger
    fmt = logging.Formatter('%(asctime)s %(message)s', '%H:%M:%S')
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(fmt)
    logger.addHandler(console)
    os.makedirs(work_space, exist_ok=True)
    file_handler = logging.FileHandler(os.path.join(work_space, log_name + '.log'))
    file_handler.setFormatter(fmt)
    logger.addHandler(file_handler)
    return logger


def get_logger():
    return logging.getLogger(LOGGER_NAME)

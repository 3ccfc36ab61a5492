"""Lazy, quiet access to Keras.

TensorFlow takes seconds to import, so no module imports it at load time:
``cnnsearch --help`` and ``study list`` must start fast. TensorFlow 2.21 also
writes oneDNN and "no CUDA driver" notices straight to file descriptor 2 before
its logging is set up (``TF_CPP_MIN_LOG_LEVEL`` does not reach them), so the
first import runs with that descriptor pointed at a temporary file, which is
replayed only if the import fails.
"""

from __future__ import annotations

import os
import sys
import tempfile
from types import ModuleType

_loaded: dict[str, ModuleType] = {}
#: Set by ``--debug`` (the CLI, a runner worker): import TensorFlow with its start-up notices shown.
show_import_log = False


def keras() -> ModuleType:
    """Import and return ``keras`` (TensorFlow backend), with TensorFlow's start-up notices hidden."""
    if "keras" not in _loaded:
        _import_quietly()
    return _loaded["keras"]


def tensorflow() -> ModuleType:
    """Import and return ``tensorflow`` with the same quiet start-up as :func:`keras`."""
    if "tensorflow" not in _loaded:
        _import_quietly()
    return _loaded["tensorflow"]


def _import_quietly() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if show_import_log:
        _import()
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            _import()
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _import() -> None:
    import tensorflow as tf

    import keras as k

    # Device discovery prints the "failed call to cuInit" line on machines without a GPU.
    tf.config.list_physical_devices()
    # tf.function retracing notices fire once per new model in a search: expected, not a problem.
    tf.get_logger().setLevel("ERROR")
    _loaded["tensorflow"] = tf
    _loaded["keras"] = k

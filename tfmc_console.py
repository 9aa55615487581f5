"""The ``tfmc`` console script: ``tfmc.cli.main`` with TensorFlow's native log lines hidden unless --verbose.

It lives outside the tfmc package because importing any module of the
package loads TensorFlow, which writes its first log lines at import: the
redirection must come before that.
"""
import os
import sys


def console_main(argv=None):
    """The ``tfmc`` console script: ``main`` with TensorFlow's log lines hidden unless ``--verbose`` is given.

    TensorFlow, LiteRT and XLA write their C++ log lines (``I0000 ...``,
    ``W0000 ...``) straight to file descriptor 2, some before any setting
    can silence them, so the only reliable switch is where that descriptor
    points. Without --verbose it points at /dev/null while ``sys.stderr``
    keeps the terminal: tfmc's own messages, progress bars, warnings and
    tracebacks still show. TensorFlow's Python logger is set to errors only.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--verbose" in argv:  # accepted after the subcommand too: tfmc demo --verbose
        argv = ["--verbose"] + [arg for arg in argv if arg != "--verbose"]
    else:
        _hide_native_stderr()
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from tfmc._keras import tf  # tfmc first: it sets TF_USE_LEGACY_KERAS before TensorFlow loads

        tf.get_logger().setLevel("ERROR")
    from tfmc.cli import main

    return main(argv)


def _hide_native_stderr():
    """Point file descriptor 2 at /dev/null and give ``sys.stderr`` a descriptor of its own on the terminal."""
    sys.stderr.flush()
    terminal = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    sys.stderr = os.fdopen(terminal, "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace")


if __name__ == "__main__":
    sys.exit(console_main())

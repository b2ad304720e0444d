"""matplotlib for the plotting scripts, with Debian's interpreter as the fallback.

A pyenv or venv python3 first in PATH may lack Debian's python3-matplotlib (setup.sh installs
that one): pyplot() then runs the calling script again under /usr/bin/python3, with the same
arguments. Import it before any work the script should not do twice.
"""
import os
import sys

SYSTEM_PYTHON = "/usr/bin/python3"


def pyplot(script, required=True):
    """matplotlib.pyplot on the Agg backend, or None when it is missing and not required.

    script names the caller in the error message. Missing and required: exits with a message
    naming the package to install.
    """
    try:
        import matplotlib
    except ImportError:
        if os.path.exists(SYSTEM_PYTHON) and os.path.realpath(sys.executable) != os.path.realpath(SYSTEM_PYTHON):
            os.execv(SYSTEM_PYTHON, [SYSTEM_PYTHON] + sys.argv)
        if required:
            raise SystemExit(f"{script}: matplotlib not found (apt-get install python3-matplotlib)")
        print(f"{script}: no matplotlib, no plot", file=sys.stderr)
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt

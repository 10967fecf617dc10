"""A STAND-IN for FXCM's `forexconnect` SDK, for tests only (not the SDK, no code of it).

It follows the Python API of forexconnect 1.6.43 as the fxcm bridge uses it (ForexConnect,
Common, fxcorepy enums and listeners, callbacks from SDK threads, get_history's busy-wait and
structured array) and serves prices from fxconnector's sim TickGenerator or a recorded file,
with faults switched on by environment variables or a control file (see `_world.py`). Put this
folder on PYTHONPATH of the bridge to use it. Modules are Python 3.7 compatible.
"""

from .common import Common
from .ForexConnect import ForexConnect
from .lib import fxcorepy
from .SessionStatusListener import SessionStatusListener
from .TableListener import TableListener
from .TableManagerListener import TableManagerListener

__version__ = "stand-in"
__all__ = [
    "Common",
    "ForexConnect",
    "SessionStatusListener",
    "TableListener",
    "TableManagerListener",
    "fxcorepy",
]

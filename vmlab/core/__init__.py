"""vmlab.core: FreeBSD 14's vm_map family and x86-64 paging, by the kernel's own names.

Every public name is re-exported here so lessons can ``from vmlab.core import *``. Each
module below owns one job; add a line when you add a module with public names (``__all__``).
"""

from .constants import *
from .snapshot import *
from .trace import *
from .x86 import *
from .vm_object import *

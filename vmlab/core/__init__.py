"""vmlab.core: FreeBSD 14's vm_map family and x86-64 paging, by the kernel's own names.

Every public name is re-exported here so lessons can ``from vmlab.core import *``. Each
module below owns one job; add a line when you add a module with public names (``__all__``).
"""

from .constants import *
from .entries import *
from .exec_image import *
from .lock import *
from .machine import *
from .pager import *
from .pmap import *
from .process_snapshot import *
from .snapshot import *
from .syscalls import *
from .sysctl import *
from .trace import *
from .vm_fault import *
from .vm_map import *
from .vm_map_find import *
from .vm_map_protect import *
from .vm_object import *
from .vm_page import *
from .vm_stack import *
from .vm_sync import *
from .vmspace import *
from .x86 import *

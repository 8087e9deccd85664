"""vmlab.io: real address spaces in.

Importers for Linux ``/proc/PID/maps`` and ``smaps``, FreeBSD ``procstat -v`` and
``procstat --libxo json vm``, and QEMU's ``info mem``. Each returns an `ImportedMap`
(entries + line-numbered `ParseIssue`s) that `ImportedMap.to_snapshot` turns into the
`vmlab.core.MapSnapshot` every view draws. See docs/importers.md.
"""

from .detect import *  # noqa: F403
from .linux import *  # noqa: F403
from .model import *  # noqa: F403
from .procstat import *  # noqa: F403
from .qemu import *  # noqa: F403

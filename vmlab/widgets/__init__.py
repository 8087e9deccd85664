"""vmlab.widgets: the animated views (ipywidgets + bokeh through jupyter_bokeh).

One call per animation in a lesson::

    from vmlab.widgets import GapSearch, Insert, Find, LockTimeline, Overview
    GapSearch(m, 0x1000, 0x4000)

Building blocks for new views: `Player` (owns the current step), `theme` (colours, fonts,
legend), `Embedded` / `ensure_bokeh` (BokehJS inline, BokehModel, Voilà refresh), `MapView`,
`TreeView`, `LockView`, `link_views`. See docs/widgets.md.
"""

from . import theme
from .animations import Animation, Find, GapSearch, Insert, LockTimeline, Overview
from .bokeh_embed import Embedded, ensure_bokeh, set_data
from .forkview import ForkView  # WIDGETS-B
from .inputs import Field, Form, InputError, parse_addr, parse_int, parse_prot, parse_size
from .linking import link_views, linked_mark_glyph
from .lockview import LockView
from .mapview import MapView
from .overview import AddressSpaceOverview
from .player import Player, step_html
from .predict import Predict
from .prefaultview import PrefaultStrip  # WIDGETS-B
from .scale import AddressScale
from .stackview import StackGrowth  # WIDGETS-B
from .treeview import TreeView
from .walkview import PageWalk  # WIDGETS-B

__all__ = [
    "AddressScale",
    "AddressSpaceOverview",
    "Animation",
    "Embedded",
    "Field",
    "Find",
    "ForkView",
    "Form",
    "GapSearch",
    "Insert",
    "InputError",
    "LockTimeline",
    "LockView",
    "MapView",
    "Overview",
    "PageWalk",
    "Player",
    "PrefaultStrip",
    "StackGrowth",
    "Predict",
    "TreeView",
    "ensure_bokeh",
    "link_views",
    "linked_mark_glyph",
    "parse_addr",
    "parse_int",
    "parse_prot",
    "parse_size",
    "set_data",
    "step_html",
    "theme",
]

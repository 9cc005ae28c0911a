__version__ = "0.2.0"

# Written by hand (nbdev only keeps __version__ up to date): drop the library messages that never apply to lpd
# before any lpd module imports diffusers' pipelines (lpd.core.LIBRARY_NOISE lists them, nbs/00_core.ipynb explains).
from .core import quiet_library_noise as _quiet_library_noise

_quiet_library_noise()

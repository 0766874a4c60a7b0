"""bigmodel_lab: the helper package behind the bigmodel-lab notebooks.

A notebook starts with::

    import bigmodel_lab as lab
    cfg = lab.setup("06")
"""

from .runtime import Config, card, pick_device, resolve_profile, setup, versions

__all__ = ["Config", "card", "pick_device", "resolve_profile", "setup", "versions"]
__version__ = "0.1.0"

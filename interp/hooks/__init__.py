"""Hook points with TransformerLens names on any loaded VLM.

``hooked`` and ``run_with_cache`` use native forward hooks on the decoder layers (every family,
~1% overhead); ``interp.hooks.bridge`` reaches the same tensors through TransformerBridge.
"""

from interp.hooks.native import HookFn, hooked, run_with_cache
from interp.hooks.points import HookPoint, hook_point, parse_hook_name, resid_hook_names

__all__ = [
    "HookFn",
    "HookPoint",
    "hook_point",
    "hooked",
    "parse_hook_name",
    "resid_hook_names",
    "run_with_cache",
]

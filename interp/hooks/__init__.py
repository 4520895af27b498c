"""Hook points with TransformerLens names on any loaded VLM.

``hooked`` and ``run_with_cache`` use native forward hooks on the decoder layers (every family,
~1% overhead) for the TransformerLens block hooks (``hook_resid_pre``, ``hook_attn_out``,
``hook_resid_mid``, ``hook_mlp_out``, ``hook_resid_post``, ``ln1/ln2.hook_normalized``);
``interp.hooks.bridge`` reaches the same tensors through TransformerBridge.
"""

from interp.hooks.native import HookFn, hooked, run_with_cache
from interp.hooks.points import (
    POINTS,
    HookPoint,
    block_hook_names,
    hook_point,
    parse_hook_name,
    resid_hook_names,
)

__all__ = [
    "POINTS",
    "HookFn",
    "HookPoint",
    "block_hook_names",
    "hook_point",
    "hooked",
    "parse_hook_name",
    "resid_hook_names",
    "run_with_cache",
]

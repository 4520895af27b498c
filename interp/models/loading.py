"""Load any supported VLM (hub id or local folder) into a :class:`~interp.models.vlm.VLM`."""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoConfig, AutoProcessor

from interp.errors import VSFAError, one_line
from interp.models.compat import has_torchvision, load_image_only_processor
from interp.models.families import FamilyAdapter, detect_family, get_family
from interp.models.placement import DeviceMap, check_placement, parse_device_map, parse_max_memory
from interp.models.vlm import VLM, execution_device
from interp.parallel import current_ranks

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA when there is a GPU, else the CPU."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise VSFAError(f"--device {device} was asked for, but no CUDA GPU is available")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise VSFAError(f"unknown device {device!r}; expected cpu, cuda, cuda:N or auto")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``auto``/None: bfloat16 on a GPU, float32 on the CPU."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return DTYPES[dtype]
    except KeyError:
        raise VSFAError(
            f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)} or auto"
        ) from None


def _is_local(name_or_path: str) -> bool:
    path = Path(name_or_path)
    return os.path.sep in name_or_path or name_or_path.startswith(".") or path.exists()


def _read_config(name_or_path: str, trust_remote_code: bool) -> Any:
    if _is_local(name_or_path):
        path = Path(name_or_path)
        if not path.exists():
            raise VSFAError(f"model path {path} does not exist")
        if not path.is_dir():
            raise VSFAError(f"model path {path} is a file; expected a folder with config.json")
        if not (path / "config.json").exists():
            raise VSFAError(
                f"model folder {path} has no config.json; expected a folder written by "
                "save_pretrained (config.json, weights, processor files)"
            )
    try:
        return AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except OSError as error:
        raise VSFAError(
            f"cannot read the config of {name_or_path!r}: {error}. Without network access give a "
            "local folder (HF_HUB_OFFLINE=1 keeps transformers from trying the hub)."
        ) from None


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def check_weights(folder: str | os.PathLike) -> None:
    """A local weights folder holds readable safetensors: a folder with pickled weights only is
    refused (nothing is unpickled), and a ``.safetensors`` file whose header does not parse or
    whose data is cut short is named."""
    from safetensors import safe_open

    folder = Path(folder)
    tensors = sorted(folder.glob("*.safetensors"))
    pickles = sorted(p for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES and p.is_file())
    if not tensors and pickles:
        raise VSFAError(
            f"{pickles[0]} is a pickle; this workbench loads safetensors only - convert it "
            "(load it where you trust it and save_pretrained(..., safe_serialization=True))"
        )
    for file in tensors:
        try:
            with safe_open(str(file), framework="pt") as handle:  # checks the data's extent
                handle.keys()
        except Exception as error:  # noqa: BLE001 - safetensors raises its own error types
            raise VSFAError(
                f"{file} is not a readable safetensors file ({one_line(str(error))}); "
                "it may be truncated or not safetensors at all"
            ) from None


def resolve_run_dir(adapter: str | os.PathLike) -> tuple[str, Path]:
    """What a run (or adapter) folder holds: ``("peft", path)`` or ``("full", path)``.

    Accepted layouts: a PEFT adapter folder (``adapter_config.json``), a run folder with
    ``adapter/`` (LoRA) or ``model/`` (full fine-tune, a ``save_pretrained`` folder).
    """
    path = Path(adapter)
    if not path.exists():
        raise VSFAError(f"adapter path {path} does not exist")
    if (path / "adapter_config.json").exists():
        return "peft", path
    if (path / "adapter" / "adapter_config.json").exists():
        return "peft", path / "adapter"
    if (path / "model" / "config.json").exists():
        return "full", path / "model"
    raise VSFAError(
        f"{path} is neither a PEFT adapter (adapter_config.json) nor a training run folder "
        "(adapter/ or model/ inside)"
    )


def load_vlm(
    name_or_path: str | os.PathLike,
    *,
    family: str | None = None,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype | None = "auto",
    adapter: str | os.PathLike | None = None,
    trust_remote_code: bool = False,
    merge_adapter: bool = False,
    device_map: DeviceMap | None = None,
    max_memory: str | dict | None = None,
    offload_folder: str | os.PathLike | None = None,
) -> VLM:
    """Load a VLM and its processor, detect (or check) its family, attach an adapter.

    Args:
        name_or_path: hub id or local ``save_pretrained`` folder. Local folders never touch the
            network; set ``HF_HUB_OFFLINE=1`` to make hub ids resolve from the local cache only.
        family: force a family (``llava``, ``qwen2_5_vl``, ``qwen3_vl``, ``gemma3``, ``idefics3``,
            ``mllama``); detected from the config when omitted.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.
        dtype: ``float32``, ``bfloat16``, ``float16`` or ``auto`` (bf16 on GPU, fp32 on CPU).
        adapter: a PEFT adapter folder or a training run folder (see :func:`resolve_run_dir`).
        trust_remote_code: off by default; only for models whose code you have read.
        merge_adapter: merge LoRA weights into the base model (faster generation, no unload).
        device_map: place the modules over several devices instead of moving the model to
            ``device`` (see :mod:`interp.models.placement`: ``auto``, a device, or an explicit
            ``{module: device}`` map); accelerate moves activations between them.
        max_memory: per-device caps for a device-map strategy (``"0=20GiB,cpu=60GiB"``);
            modules that do not fit are offloaded to disk.
        offload_folder: where disk-offloaded weights are written when they cannot be read from
            the weights file in place (default: a temporary folder removed with the model).
    """
    name_or_path = str(name_or_path)
    check_placement(device_map, max_memory)
    placement = parse_device_map(device_map)
    if placement is not None and current_ranks().world_size > 1:
        raise VSFAError(
            "--device-map splits one model copy over this machine's devices; it does not combine "
            "with several processes (launch one process, or drop --device-map)"
        )
    torch_device = resolve_device(device) if placement is None else _map_device(placement)
    torch_dtype = resolve_dtype(dtype, torch_device)
    weights_path = name_or_path
    adapter_kind, adapter_dir = (None, None)
    if adapter is not None:
        adapter_kind, adapter_dir = resolve_run_dir(adapter)
        if adapter_kind == "full":
            weights_path = str(adapter_dir)

    config = _read_config(weights_path, trust_remote_code)
    if Path(weights_path).is_dir():
        check_weights(weights_path)
    if adapter_kind == "peft":
        check_weights(adapter_dir)
    adapter_family: FamilyAdapter = get_family(family) if family else detect_family(config)
    if family:
        detected = detect_family(config)
        if detected.name != adapter_family.name:
            raise VSFAError(
                f"--family {family} was given but {name_or_path} is a {detected.name} model "
                f"({detected.model_class})"
            )
    model_class = getattr(transformers, adapter_family.model_class)
    if placement is None:
        model = model_class.from_pretrained(
            weights_path, dtype=torch_dtype, trust_remote_code=trust_remote_code
        )
        model.to(torch_device)
    else:
        _check_map(model_class, config, placement)
        model = _dispatched(
            model_class, weights_path, torch_dtype, trust_remote_code, placement,
            parse_max_memory(max_memory), offload_folder,
        )  # fmt: skip
    processor = _load_processor(adapter_family, name_or_path, weights_path, trust_remote_code)
    model.eval()

    if adapter_kind == "peft":
        from peft import PeftModel

        if merge_adapter and offloaded(model):
            raise VSFAError(
                "cannot merge an adapter into weights offloaded to the CPU or disk; leave the "
                "adapter unmerged or give the model room on its devices (--max-memory)"
            )
        if placement is None:
            model = PeftModel.from_pretrained(model, str(adapter_dir))
        else:
            model = _attach_adapter(model, adapter_dir)
        if merge_adapter:
            model = model.merge_and_unload()
        model.eval()

    tokenizer = getattr(processor, "tokenizer", processor)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return VLM(
        model=model,
        processor=processor,
        family=adapter_family,
        name_or_path=name_or_path,
        adapter_path=None if adapter is None else str(adapter),
    )


def _map_device(placement: DeviceMap) -> torch.device:
    """The device that picks the ``auto`` dtype of a device-mapped load: a GPU when the map
    uses one (a strategy uses one when there is one), else the CPU."""
    if isinstance(placement, str):
        return resolve_device("auto")
    gpu = [v for v in placement.values() if isinstance(v, int) or v == "cuda"]
    if gpu and not torch.cuda.is_available():
        raise VSFAError("--device-map places modules on a GPU, but no CUDA GPU is available")
    return torch.device("cuda") if gpu else torch.device("cpu")


def offloaded(model: torch.nn.Module) -> bool:
    """Whether accelerate keeps some of ``model``'s weights off their execution device (on the
    CPU for a GPU model, or on disk)."""
    placed = set(getattr(model, "hf_device_map", {}).values())
    return "disk" in placed or ("cpu" in placed and len(placed) > 1)


def _check_map(model_class: Any, config: Any, placement: DeviceMap) -> None:
    """An explicit map names modules of this model and places every weight (checked on an
    empty-weight copy, before anything is read)."""
    if not isinstance(placement, dict) or set(placement) == {""}:
        return
    from accelerate import init_empty_weights

    with init_empty_weights():
        skeleton = model_class._from_config(config)
    modules = dict(skeleton.named_modules())
    unknown = [key for key in placement if key and key not in modules]
    if unknown:
        top = ", ".join(name for name, _ in skeleton.named_children())
        raise VSFAError(
            f"--device-map names {unknown[0]!r}, which is not a module of this model "
            f"(its top-level modules: {top})"
        )
    if "" in placement:
        return
    unplaced = [
        name for name, _ in skeleton.named_parameters()
        if not any(name.startswith(f"{key}.") for key in placement)
    ]  # fmt: skip
    if unplaced:
        raise VSFAError(
            f"--device-map places no module holding {unplaced[0]!r} ({len(unplaced)} weights "
            "unplaced); add its module, or '' for everything not named"
        )


def _dispatched(
    model_class: Any, weights_path: str, dtype: torch.dtype, trust_remote_code: bool,
    placement: DeviceMap, max_memory: dict | None, offload_folder: str | os.PathLike | None,
) -> torch.nn.Module:  # fmt: skip
    """``from_pretrained`` with accelerate placing the modules (a bad map is one line)."""
    folder = offload_folder
    if folder is None:
        folder = tempfile.mkdtemp(prefix="vsfa-offload-")
    try:
        model = model_class.from_pretrained(
            weights_path, dtype=dtype, trust_remote_code=trust_remote_code,
            device_map=placement, max_memory=max_memory, offload_folder=str(folder),
        )  # fmt: skip
    except (ValueError, KeyError, RuntimeError) as error:
        if offload_folder is None:
            shutil.rmtree(folder, ignore_errors=True)
        raise VSFAError(f"--device-map {placement!r}: {one_line(str(error))}") from None
    if offload_folder is None:
        weakref.finalize(model, shutil.rmtree, folder, True)
    return model


@contextmanager
def adapters_on_execution_devices(model: torch.nn.Module) -> Iterator[None]:
    """While PEFT adds adapters to a device-mapped model: each weight accelerate offloaded (it
    sits on ``meta``) is stood in for by a storage-free tensor on the device its module runs on,
    so PEFT puts that module's adapter there, as a real trainable tensor, instead of on ``meta``.
    The offloaded weights are back in place on exit, frozen or not as their stand-ins were left."""
    swapped = []
    for module in model.modules():
        weight = module._parameters.get("weight")
        if weight is None or weight.device.type != "meta" or not hasattr(module, "_hf_hook"):
            continue
        device = execution_device(module)
        empty = torch.empty((), dtype=weight.dtype, device=device).expand(weight.shape)
        module._parameters["weight"] = torch.nn.Parameter(empty, requires_grad=False)
        swapped.append((module, weight))
    try:
        yield
    finally:
        for module, weight in swapped:
            weight.requires_grad_(module._parameters["weight"].requires_grad)
            module._parameters["weight"] = weight


def _attach_adapter(model: torch.nn.Module, adapter_dir: Path) -> torch.nn.Module:
    """A saved PEFT adapter on a device-mapped model, each adapter weight on its layer's
    execution device (``PeftModel.from_pretrained`` would re-dispatch the offloaded model)."""
    from peft import PeftConfig, PeftModel, set_peft_model_state_dict
    from peft.utils import load_peft_weights

    config = PeftConfig.from_pretrained(str(adapter_dir))
    config.inference_mode = True
    with adapters_on_execution_devices(model):
        peft_model = PeftModel(model, config)
    result = set_peft_model_state_dict(peft_model, load_peft_weights(str(adapter_dir), "cpu"))
    missing = [key for key in result.missing_keys if "lora_" in key]
    if missing or result.unexpected_keys:
        raise VSFAError(
            f"adapter {adapter_dir} does not fit this model: "
            f"{len(missing)} missing and {len(result.unexpected_keys)} unexpected weights"
        )
    return peft_model


def _load_processor(
    family: FamilyAdapter, name_or_path: str, weights_path: str, trust_remote_code: bool
) -> Any:
    image_only = family.needs_video_processor and not has_torchvision()
    for candidate in dict.fromkeys([weights_path, name_or_path]):
        try:
            if image_only:
                processor_class = getattr(transformers, family.processor_class)
                return load_image_only_processor(
                    processor_class, candidate, trust_remote_code=trust_remote_code
                )
            return AutoProcessor.from_pretrained(candidate, trust_remote_code=trust_remote_code)
        except (OSError, ValueError, TypeError):
            continue
    raise VSFAError(
        f"no processor found in {name_or_path!r}: the folder needs the processor and tokenizer "
        "files that save_pretrained writes (preprocessor_config.json, tokenizer files)"
    )

"""The backbone and its starting weights: timm's model by name, from scratch, from timm's ImageNet weights
(``model.pretrained``: the Hugging Face cache, downloaded on first use) or from a saved state dict
(``model.pretrained_file``: a timm or torchvision ``.pth``/``.bin``/``.safetensors`` file, for offline
machines). :func:`check_weights` says before any data work when the weights cannot be had, and how to get them."""

from __future__ import annotations

import functools
import socket
from pathlib import Path
from urllib.parse import urlparse

import timm
import torch
from huggingface_hub import constants, try_to_load_from_cache
from timm.models import load_state_dict
from torch import nn

from configs.config import Config, ModelConfig
from core.errors import ConfigError, describe

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


def _remedies(name: str) -> str:
    return (
        f"either save them once on a machine with network (python -c \"import timm; timm.create_model('{name}', "
        'pretrained=True)" fills the Hugging Face cache; copy ~/.cache/huggingface to this machine), or pass '
        "model.pretrained_file=PATH to a saved timm or torchvision state dict (.pth, .bin or .safetensors); "
        "model.pretrained=false trains from scratch"
    )


def create_backbone(cfg: Config, num_classes: int) -> nn.Module:
    """``timm.create_model`` by name (``num_classes=0``: pooled features) with the configured starting weights;
    a clear error for an unknown name or weights that cannot be had or do not fit."""
    model_cfg = cfg.model
    name = model_cfg.backbone
    if not timm.is_model(name):
        raise ConfigError(f"model.backbone: timm has no model {name!r} (see timm.list_models())")
    kwargs = {"num_classes": num_classes, "drop_rate": model_cfg.drop_rate}
    if model_cfg.pretrained_file:
        model = timm.create_model(name, pretrained=False, **kwargs)
        load_weights_file(model, Path(model_cfg.pretrained_file))
        return model
    if not model_cfg.pretrained:
        return timm.create_model(name, pretrained=False, **kwargs)
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except Exception as exc:
        raise ConfigError(
            f"model.pretrained: timm could not load ImageNet weights for {name!r} ({describe(exc)}); {_remedies(name)}"
        ) from None


def load_weights_file(model: nn.Module, path: Path) -> None:
    """Load a saved state dict into ``model`` (timm's reader: plain or ``state_dict``/``model``-wrapped torch
    files and safetensors), every weight but the classifier's, which is the task's own. An error naming the file
    when it is missing, unreadable, or holds weights of another architecture."""
    if not path.is_file():
        raise ConfigError(f"model.pretrained_file: {path} is not a file")
    try:
        state = load_state_dict(str(path), use_ema=True)
    except Exception as exc:
        raise ConfigError(f"model.pretrained_file: {path} cannot be read as a state dict ({describe(exc)})") from None
    classifier = model.pretrained_cfg.get("classifier") or ()
    heads = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    is_head = lambda key: any(key == h or key.startswith(h + ".") for h in heads)  # noqa: E731
    own = model.state_dict()
    body = {k: v for k, v in state.items() if not is_head(k)}
    missing = [k for k in own if not is_head(k) and k not in body]
    misfit = [k for k, v in body.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
    extra = [k for k in body if k not in own]
    if missing or misfit or extra:
        found = "; ".join(
            f"{what}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for what, keys in (("missing", missing), ("other shapes", misfit), ("unknown", extra))
            if keys
        )
        raise ConfigError(
            f"model.pretrained_file: {path} does not hold {model.pretrained_cfg.get('architecture')} weights "
            f"({len(missing)} missing, {len(misfit)} of other shapes, {len(extra)} unknown; {found})"
        )
    with torch.no_grad():
        model.load_state_dict(body, strict=False)


def _cached(name: str) -> bool:
    """Whether timm's weights for ``name`` are in the Hugging Face cache (or torch hub's, for URL weights)."""
    pretrained = timm.models.get_pretrained_cfg(name)
    if pretrained is None:
        return False
    if pretrained.hf_hub_id:
        files = (pretrained.hf_hub_filename,) if pretrained.hf_hub_filename else WEIGHT_FILES
        if any(isinstance(try_to_load_from_cache(pretrained.hf_hub_id, f), str) for f in files):
            return True
    if pretrained.url:
        return (Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(pretrained.url).path).name).is_file()
    return False


def _reachable(name: str, timeout: float = 3.0) -> bool:
    """Whether the host serving ``name``'s weights answers: a machine without network fails here at once, not
    after the Hub's minute of retries."""
    pretrained = timm.models.get_pretrained_cfg(name)
    url = constants.ENDPOINT if pretrained is None or pretrained.hf_hub_id else pretrained.url
    host = urlparse(url).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


@functools.cache
def _check(name: str, pretrained: bool, file: str | None) -> None:
    if not timm.is_model(name):
        raise ConfigError(f"model.backbone: timm has no model {name!r} (see timm.list_models())")
    if file:
        load_weights_file(timm.create_model(name, pretrained=False, num_classes=0), Path(file))
        return
    if not pretrained or _cached(name):
        return
    if timm.models.get_pretrained_cfg(name) is None:
        raise ConfigError(f"model.pretrained: timm has no ImageNet weights for {name!r}; {_remedies(name)}")
    if not _reachable(name):
        raise ConfigError(
            f"model.pretrained: the ImageNet weights of {name!r} are not in the Hugging Face cache and this "
            f"machine cannot reach the Hub to download them; {_remedies(name)}"
        )


def check_weights(model_cfg: ModelConfig) -> None:
    """Before any data work: the backbone exists and its starting weights can be had (a readable file that fits
    it, timm's weights in the cache, or a Hub this machine can reach); a ConfigError naming the remedies
    otherwise. Checked once per process for each setting."""
    _check(model_cfg.backbone, model_cfg.pretrained, model_cfg.pretrained_file)

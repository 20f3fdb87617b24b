"""Datasets as LightningDataModules with one interface; `make_datamodule(cfg.data)`.

Names: embedded (default: MNIST-5k or digits, offline), cifar10, cifar100, imagenet,
synthetic. The config is checked against the dataset's schema before anything is read,
so a bad value is one ConfigError line; a missing or malformed dataset on disk is one
DataError line naming the path (raised by `setup()`, on first use).
"""

from __future__ import annotations

from typing import Any, Mapping

from omegaconf import DictConfig

from nas.config import ConfigError, check
from nas.data.base import (DataError, ImageDataModule, LoaderConfig, TensorImageDataset,
                           stratified_split)
from nas.data.cifar import CifarConfig, CifarDataModule
from nas.data.embedded import EmbeddedConfig, EmbeddedDataModule
from nas.data.imagenet import ImageNetConfig, ImageNetDataModule
from nas.data.synthetic import SyntheticConfig, SyntheticDataModule

# name -> config schema (a dataclass, checked with nas.config.check)
DATA_CONFIGS: dict[str, type[LoaderConfig]] = {
    "embedded": EmbeddedConfig,
    "cifar10": CifarConfig,
    "cifar100": CifarConfig,
    "imagenet": ImageNetConfig,
    "synthetic": SyntheticConfig,
}

# name -> datamodule class (constructed from the checked schema instance)
DATAMODULES: dict[str, type[ImageDataModule]] = {
    "embedded": EmbeddedDataModule,
    "cifar10": CifarDataModule,
    "cifar100": CifarDataModule,
    "imagenet": ImageNetDataModule,
    "synthetic": SyntheticDataModule,
}


def data_config(cfg: Mapping[str, Any] | DictConfig | LoaderConfig) -> LoaderConfig:
    """Check a `data` config group; return its schema instance (or ConfigError, one line)."""
    if isinstance(cfg, LoaderConfig):
        return cfg
    name = cfg.get("name") if hasattr(cfg, "get") else None
    if name not in DATA_CONFIGS:
        raise ConfigError(f"data.name: expected one of {', '.join(DATA_CONFIGS)}, got {name!r}")
    return check(DATA_CONFIGS[name], cfg, "data")


def make_datamodule(cfg: Mapping[str, Any] | DictConfig | LoaderConfig) -> ImageDataModule:
    """The datamodule for a `data` config (checked first; nothing is read until setup)."""
    checked = data_config(cfg)
    return DATAMODULES[checked.name](checked)


__all__ = [
    "DATA_CONFIGS", "DATAMODULES", "CifarConfig", "CifarDataModule", "ConfigError", "DataError",
    "EmbeddedConfig", "EmbeddedDataModule", "ImageDataModule", "ImageNetConfig",
    "ImageNetDataModule", "LoaderConfig", "SyntheticConfig", "SyntheticDataModule",
    "TensorImageDataset", "data_config", "make_datamodule", "stratified_split",
]

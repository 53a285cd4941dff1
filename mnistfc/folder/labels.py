"""Per-image labels in a shard: what each scored image is, and what a trial predicted.

Why: a table that re-scores trials under another protocol (the final epoch instead of the
best, all test images instead of a slice) or compares two trials image by image (a paired
test) needs more than one accuracy per split. Each slice's labels are stored as uint8,
zlib-compressed and base64-encoded: about 1.1 KB for 2,000 MNIST images, 4.4 KB for 8,000.

A shard's ``predictions`` object:
``{"encoding": ENCODING, "true": {"valid": .., "test": ..}, "best": {...}, "last": {...}}``
with ``best`` the restored best-validation epoch and ``last`` the final epoch (null when the
final epoch diverged).
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from mnistfc.errors import ShardError

ENCODING = "uint8-zlib-base64"
SCORED = ("valid", "test")  # the slices whose images are labelled (train is not stored)
EPOCHS = ("best", "last")


def encode_labels(labels: Any) -> str:
    """Return a slice's labels (0-255) as compact text."""
    array = np.asarray(labels)
    if array.ndim != 1 or (array.size and (array.min() < 0 or array.max() > 255)):
        raise ValueError(f"labels must be a 1-d array of 0-255, got shape {array.shape}")
    return base64.b64encode(zlib.compress(array.astype(np.uint8).tobytes(), 9)).decode("ascii")


def decode_labels(text: str) -> np.ndarray:
    """Return the labels ``encode_labels`` wrote (ShardError when the text is damaged)."""
    try:
        raw = zlib.decompress(base64.b64decode(text.encode("ascii"), validate=True))
    except (binascii.Error, zlib.error, UnicodeEncodeError, AttributeError) as exc:
        raise ShardError(f"undecodable labels ({exc})") from exc
    return np.frombuffer(raw, dtype=np.uint8)


def predictions_record(
    true: Mapping[str, Any], best: Mapping[str, Any], last: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Return a shard's ``predictions`` object from label arrays per scored slice."""

    def encode(by_split: Mapping[str, Any]) -> dict[str, str]:
        return {split: encode_labels(by_split[split]) for split in SCORED}

    return {
        "encoding": ENCODING,
        "true": encode(true),
        "best": encode(best),
        "last": None if last is None else encode(last),
    }


def check_predictions(predictions: Any, sizes: Mapping[str, int | None], where: str) -> None:
    """Raise ShardError unless ``predictions`` is a readable object with one label per image.

    ``sizes`` gives each slice's image count where the shard's ``data`` says it.
    """
    if predictions is None:
        return
    if not isinstance(predictions, dict) or predictions.get("encoding") != ENCODING:
        raise ShardError(f"{where}: predictions must be an object with encoding {ENCODING!r}")
    for kind in ("true", *EPOCHS):
        by_split = predictions.get(kind)
        if by_split is None and kind == "last":
            continue
        if not isinstance(by_split, dict) or set(by_split) != set(SCORED):
            raise ShardError(f"{where}: predictions.{kind} must hold {', '.join(SCORED)}")
        for split in SCORED:
            try:
                n = len(decode_labels(by_split[split]))
            except ShardError as exc:
                raise ShardError(f"{where}: predictions.{kind}.{split}: {exc}") from exc
            expected = sizes.get(split)
            if expected is not None and n != expected:
                raise ShardError(
                    f"{where}: predictions.{kind}.{split} has {n} labels for {expected} images"
                )


def correct(predictions: Mapping[str, Any], epoch: str, split: str) -> np.ndarray | None:
    """Return which images of ``split`` the ``epoch`` (best or last) got right, or None."""
    by_split = predictions.get(epoch)
    if by_split is None:
        return None
    return decode_labels(by_split[split]) == decode_labels(predictions["true"][split])

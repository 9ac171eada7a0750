"""Stage `embed`: the frozen backbone's embeddings of one task's train/val/test splits (the cache probes read)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ..backbones import load_backbone
from ..costs import device_name, encoder_flops_per_row, measure
from ..data import load_prepared
from ..embeddings import ensure_embeddings
from ..io import read_json, seed_everything, write_json
from ..layers import ensure_layer_features
from ..params import Params, task_kind
from ..paths import TaskPaths


def run(params: Params, task: str, *, root: Path = Path("."), device: str = "cpu",
        progress: bool = True) -> dict[str, Any]:
    """Write ``data/embeddings/<task>/`` (arrays + ``meta.json`` with the measured cost per row); a cache
    whose key matches (backbone, settings, data checksum) is reused. Returns the meta."""
    seed_everything(0)
    paths = TaskPaths(root, task)
    data = load_prepared(paths.prepared)
    embed = params.scale.embed
    encoder = load_backbone(params.backbone_for(task), kind=task_kind(params.task(task)), pooling=embed.pooling,
                            max_length=embed.max_length, image_size=embed.image_size)
    with measure(device) as cost:
        arrays, rebuilt = ensure_embeddings(encoder, data, paths.embeddings, batch_size=embed.batch_size,
                                            device=device, progress=progress)
    meta = read_json(paths.embeddings / "meta.json")
    if rebuilt:
        rows = sum(len(a) for a in arrays.values())
        meta["cost"] = {"seconds": cost.seconds, "rows": rows, "seconds_per_row": cost.seconds / rows,
                        "peak_mem_mib": cost.peak_mem_mib, "device": device_name(device),
                        "backbone_params": sum(p.numel() for p in encoder.parameters())}
    if rebuilt or "flops_per_row" not in meta:
        # what serving a probe prediction costs before the head: the backbone's forward on one row
        meta["flops_per_row"] = encoder_flops_per_row(encoder, data.splits["train"].x)
        write_json(paths.embeddings / "meta.json", meta)
    if rebuilt or "layers" not in meta or not paths.layer_features.is_file():
        # the layer probe's features: every block's pooled output (one more pass; its cost is recorded apart)
        meta["layers"] = ensure_layer_features(encoder, data.splits, paths.layer_features,
                                               batch_size=embed.batch_size)
        write_json(paths.embeddings / "meta.json", meta)
    return meta


if __name__ == "__main__":
    from ..entry import stage_main

    sys.exit(stage_main(run, doc=__doc__))

"""FLOPs of the tuned runs, derived when a stage assembles its rows (never stored in a run record, so a fix
to the count re-derives every stored run without retraining it): per-item FLOPs of one run shape (task ×
method) counted once per stage with PyTorch's FlopCounterMode on real selection rows, times what the record
says the run processed (optimizer steps × batch, evaluations × selection rows)."""

from __future__ import annotations

from typing import Any

from .runs import StageContext, ensure_val_bank, model_for, stage_items


def add_run_flops(ctx: StageContext, row: dict[str, Any], *, key: str) -> dict[str, Any]:
    """`row` with ``train_flops`` and ``infer_flops_per_row`` derived from its steps and evaluations."""
    ft = ctx.params.scale.finetune
    if "train_item" not in ctx.flops:
        ensure_val_bank(ctx)
        model = model_for(ctx, key)
        run_flops(ctx, model, samples_trained=0, evaluations=0, budget=0)
    samples = int(row["steps"]) * ft.batch_size * ft.grad_accum
    return {**row, **run_flops(ctx, None, samples_trained=samples, evaluations=int(row["evaluations"]),
                               budget=int(row["budget"]))}


def _per_item_flops(model: Any, encoder: Any, items: Any, *, backward: bool) -> float:
    """FLOPs per item of one forward (and backward) pass of `model`, averaged over the first ≤32 of `items`.
    Text rows are counted one at a time, each at its own token count: training batches are grouped by
    length, so padding to a random batch's longest row would overstate the tokens processed."""
    import torch

    from .costs import count_flops, mean_row_flops

    n = min(32, len(items))
    chunks = [[item] for item in items[:n]] if isinstance(items, list) else [items[:n]]
    device = next(model.parameters()).device
    batches = [{k: v.to(device) for k, v in encoder.prepare(chunk).items()} for chunk in chunks]
    was_training = model.training
    model.eval()  # dropout off: the count is of the arithmetic, not of a random mask

    def count(batch: dict[str, Any]) -> int:
        if not backward:
            with torch.no_grad():
                return count_flops(lambda: model(**batch))
        flops = count_flops(lambda: model(**batch).float().sum().backward())
        model.zero_grad(set_to_none=True)
        return flops

    # text: one row per batch (mean_row_flops counts each token length once); images: one batch of n
    mean = mean_row_flops(count, batches) / (1 if isinstance(items, list) else n)
    model.train(was_training)
    return mean


def run_flops(ctx: StageContext, model: Any, *, samples_trained: int, evaluations: int,
              budget: int) -> dict[str, float]:
    """Training and inference FLOPs of one run, counted once per run shape (task × method; PyTorch's
    FlopCounterMode on real selection rows): training = forward+backward per item × items trained + forward
    per item × selection rows × evaluations (+ partial: its frozen lower blocks once per budget and
    selection row); inference per row = the whole model's forward (partial: lower blocks included)."""
    if "train_item" not in ctx.flops:
        from .engine import Classifier

        items = stage_items(ctx, "val", ctx.val.x)
        ctx.flops["train_item"] = _per_item_flops(model, model.encoder, items, backward=True)
        ctx.flops["forward_item"] = _per_item_flops(model, model.encoder, items, backward=False)
        ctx.flops["serve_item"] = ctx.flops["forward_item"]
        if ctx.method == "partial":  # the whole backbone's forward, which serving runs
            whole = Classifier(ctx.base_encoder, ctx.n_outputs)
            ctx.flops["serve_item"] = _per_item_flops(whole, ctx.base_encoder, ctx.val.x, backward=False)
    lower = ctx.flops["serve_item"] - ctx.flops["forward_item"]  # 0 unless partial
    train = (ctx.flops["train_item"] * samples_trained + ctx.flops["forward_item"] * len(ctx.val.y) * evaluations
             + lower * (budget + len(ctx.val.y)))
    return {"train_flops": float(train), "infer_flops_per_row": float(ctx.flops["serve_item"])}

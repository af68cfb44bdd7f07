"""
Makes a reference for reelbot's cross-frame UNet rewrite from the real diffusers UNet code:
a small UNet2DConditionModel with seeded random weights (the Stable Diffusion 1.x block layout,
narrower), exported to ONNX the way `optimum-cli export onnx` does (torch.onnx.export, the
TorchScript exporter), plus inputs and outputs computed in torch with Text2Video-Zero's
CrossFrameAttnProcessor (keys and values of every attn1 block from frame 0 of each guidance group).

Needs torch and diffusers, no network. Usage: python scripts/export-diffusers-unet-reference.py OUT_DIR
Writes OUT_DIR/unet/model.onnx and OUT_DIR/reference.json (+ .bin tensors, little-endian float32).
"""
import json
import os
import sys

import torch
import diffusers
from diffusers import UNet2DConditionModel

out = sys.argv[1]
os.makedirs(os.path.join(out, "unet"), exist_ok=True)
torch.manual_seed(0)
unet = UNet2DConditionModel(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    layers_per_block=1,
    block_out_channels=(16, 32),
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=16,
    attention_head_dim=4,  # diffusers' SD 1.x naming: this is the number of heads
    norm_num_groups=8,
).eval()
# Louder attention than a fresh init, so that a wrong rewrite cannot hide in rounding.
with torch.no_grad():
    for name, module in unet.named_modules():
        if name.endswith("attn1"):
            module.to_q.weight.mul_(4.0)
            module.to_k.weight.mul_(4.0)
            module.to_out[0].weight.mul_(4.0)


class CrossFrameAttnProcessor:
    """Text2Video-Zero's processor: self-attention keys/values from frame 0 of each group."""

    def __init__(self, groups):
        self.groups = groups

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        batch, seq, _ = hidden_states.shape
        query = attn.to_q(hidden_states)
        cross = encoder_hidden_states is not None
        context = encoder_hidden_states if cross else hidden_states
        key = attn.to_k(context)
        value = attn.to_v(context)
        if not cross:
            frames = batch // self.groups
            key = key.reshape(self.groups, frames, *key.shape[1:])[:, [0] * frames].reshape(batch, *key.shape[1:])
            value = value.reshape(self.groups, frames, *value.shape[1:])[:, [0] * frames].reshape(batch, *value.shape[1:])
        query = attn.head_to_batch_dim(query)
        key = attn.head_to_batch_dim(key)
        value = attn.head_to_batch_dim(value)
        probs = attn.get_attention_scores(query, key, None)
        hidden = attn.batch_to_head_dim(torch.bmm(probs, value))
        return attn.to_out[1](attn.to_out[0](hidden))


def save(name, tensor):
    array = tensor.detach().float().contiguous().numpy()
    array.astype("<f4").tofile(os.path.join(out, f"{name}.bin"))
    return {"file": f"{name}.bin", "dims": list(array.shape)}


sample = torch.randn(4, 4, 8, 8)
timestep = torch.tensor([500], dtype=torch.int64)
context = torch.randn(4, 7, 16)
export_kwargs = dict(
    input_names=["sample", "timestep", "encoder_hidden_states"],
    output_names=["out_sample"],
    dynamic_axes={"sample": {0: "batch", 2: "height", 3: "width"}, "encoder_hidden_states": {0: "batch", 1: "sequence"}, "out_sample": {0: "batch"}},
    opset_version=14,
    do_constant_folding=True,
)
try:
    torch.onnx.export(unet, (sample, timestep, context), os.path.join(out, "unet", "model.onnx"), dynamo=False, **export_kwargs)
except TypeError:
    torch.onnx.export(unet, (sample, timestep, context), os.path.join(out, "unet", "model.onnx"), **export_kwargs)

reference = {"torch": torch.__version__, "diffusers": diffusers.__version__, "heads": 4, "cases": []}
with torch.no_grad():
    for groups, frames in ((2, 3), (3, 2), (1, 4)):
        batch = groups * frames
        x = torch.randn(batch, 4, 8, 8)
        c = torch.randn(batch, 7, 16)
        unet.set_attn_processor(diffusers.models.attention_processor.AttnProcessor())
        plain = unet(x, timestep, c).sample
        unet.set_attn_processor(CrossFrameAttnProcessor(groups))
        crossed = unet(x, timestep, c).sample
        tag = f"g{groups}f{frames}"
        reference["cases"].append({
            "groups": groups,
            "frames": frames,
            "sample": save(f"{tag}-sample", x),
            "encoder_hidden_states": save(f"{tag}-context", c),
            "plain": save(f"{tag}-plain", plain),
            "cross_frame": save(f"{tag}-cross", crossed),
            "max_abs_difference_cross_vs_plain": float((crossed - plain).abs().max()),
        })
reference["timestep"] = 500
with open(os.path.join(out, "reference.json"), "w") as f:
    json.dump(reference, f, indent=1)
print(json.dumps({k: v for k, v in reference.items() if k != "cases"}))
for case in reference["cases"]:
    print(case["groups"], case["frames"], case["max_abs_difference_cross_vs_plain"])
print("files", sorted(os.listdir(out)), os.path.getsize(os.path.join(out, "unet", "model.onnx")))

"""
Exports a tiny diffusers AutoencoderKL's encoder the two ways optimum's exporter has wrapped it, to
check by hand that test/fixtures/diffusers-pipeline/vae-encoder-variants (written by
scripts/make-vae-encoder-variants.ts from the committed torch 2.11 export) has the same graph tail
as torch writes:

- OUT/old.onnx: optimum before October 2024, `{"latent_sample": vae.encode(x=sample)["latent_dist"].sample()}`
  (optimum/exporters/utils.py before huggingface/optimum d3c56cd5): an unseeded RandomNormalLike in the graph;
- OUT/new.onnx: optimum since, `{"latent_parameters": vae.encode(x=sample)["latent_dist"].parameters}`.

Checked on 2026-12-01 with torch 1.13 and diffusers 0.31 (shared/tools/diffusers-cpu): from the
quant_conv on, old.onnx's nodes (op, name, inputs, constants) equal the fixture's node for node, and
new.onnx is the quant_conv output named latent_parameters with 8 static channels, as the fixture.
Needs torch and diffusers, no network. Usage: python scripts/export-optimum-vae-encoder-forms.py OUT_DIR
"""
import os
import sys

import torch
from diffusers import AutoencoderKL

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)
vae = AutoencoderKL(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(8, 8, 16, 16),
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=4,
    sample_size=64,
).eval()


class Old(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, sample):
        return {"latent_sample": self.vae.encode(x=sample)["latent_dist"].sample()}


class New(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, sample):
        return {"latent_parameters": self.vae.encode(x=sample)["latent_dist"].parameters}


for name, module, output in (("old", Old(vae), "latent_sample"), ("new", New(vae), "latent_parameters")):
    with torch.no_grad():
        torch.onnx.export(
            module,
            (torch.randn(1, 3, 64, 64),),
            os.path.join(out, f"{name}.onnx"),
            input_names=["sample"],
            output_names=[output],
            dynamic_axes={"sample": {0: "batch_size", 2: "height", 3: "width"}, output: {0: "batch_size", 2: "height_latent", 3: "width_latent"}},
            opset_version=14,
            do_constant_folding=True,
        )
print("wrote", os.path.join(out, "old.onnx"), os.path.join(out, "new.onnx"), "torch", torch.__version__)

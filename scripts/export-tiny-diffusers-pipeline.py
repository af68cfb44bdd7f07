"""
Exports a tiny Stable Diffusion 1.x pipeline from the real diffusers / transformers modules, with
seeded random weights, in the folder layout and input/output names of `optimum-cli export onnx`
(text_encoder, unet, vae_decoder, vae_encoder), so reelbot's model loading can be tested on graphs
that torch's exporter wrote. Two folders: OUT/sd (4-channel UNet, text to video) and OUT/ip2p
(8-channel UNet, instruct-pix2pix). The tokenizer and scheduler files come from reelbot's own
built-in set (copied in afterwards); the text encoder's vocabulary size matches that tokenizer.

Needs torch, transformers and diffusers, no network. Usage: python scripts/export-tiny-diffusers-pipeline.py OUT_DIR
"""
import json
import os
import sys

import torch
import diffusers
import transformers
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

out = sys.argv[1]
VOCAB = int(os.environ.get("VOCAB_SIZE", "1514"))
torch.manual_seed(0)


def export(module, args, path, input_names, output_names, dynamic_axes):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    kwargs = dict(input_names=input_names, output_names=output_names, dynamic_axes=dynamic_axes, opset_version=14, do_constant_folding=True)
    try:
        torch.onnx.export(module, args, path, dynamo=False, **kwargs)
    except TypeError:
        torch.onnx.export(module, args, path, **kwargs)


class TextEncoder(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids):
        out = self.model(input_ids=input_ids)
        return out.last_hidden_state, out.pooler_output


class VaeDecoder(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, latent_sample):
        return self.vae.decode(latent_sample).sample


class VaeEncoder(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, sample):
        return self.vae.encode(sample).latent_dist.mode()


class Unet(torch.nn.Module):
    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, encoder_hidden_states):
        return self.unet(sample, timestep, encoder_hidden_states).sample


text = CLIPTextModel(CLIPTextConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2, max_position_embeddings=77, projection_dim=32)).eval()
vae = AutoencoderKL(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(8, 8, 16, 16),
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=4,
    sample_size=512,
    mid_block_add_attention=False,
).eval()


def unet(in_channels):
    torch.manual_seed(1)
    model = UNet2DConditionModel(
        sample_size=64,
        in_channels=in_channels,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(16, 32, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=8,
    ).eval()
    return model


ids = torch.zeros(1, 77, dtype=torch.int32)
for name, unet_model in (("sd", unet(4)), ("ip2p", unet(8))):
    root = os.path.join(out, name)
    with torch.no_grad():
        export(TextEncoder(text), (ids,), os.path.join(root, "text_encoder", "model.onnx"), ["input_ids"], ["last_hidden_state", "pooler_output"], {"input_ids": {0: "batch_size", 1: "sequence_length"}, "last_hidden_state": {0: "batch_size", 1: "sequence_length"}, "pooler_output": {0: "batch_size"}})
        export(VaeDecoder(vae), (torch.randn(1, 4, 64, 64),), os.path.join(root, "vae_decoder", "model.onnx"), ["latent_sample"], ["sample"], {"latent_sample": {0: "batch_size", 2: "height_latent", 3: "width_latent"}, "sample": {0: "batch_size", 2: "height", 3: "width"}})
        export(VaeEncoder(vae), (torch.randn(1, 3, 512, 512),), os.path.join(root, "vae_encoder", "model.onnx"), ["sample"], ["latent_sample"], {"sample": {0: "batch_size", 2: "height", 3: "width"}, "latent_sample": {0: "batch_size", 2: "height_latent", 3: "width_latent"}})
        channels = unet_model.config.in_channels
        export(Unet(unet_model), (torch.randn(2, channels, 64, 64), torch.tensor([981], dtype=torch.int64), torch.randn(2, 77, 32)), os.path.join(root, "unet", "model.onnx"), ["sample", "timestep", "encoder_hidden_states"], ["out_sample"], {"sample": {0: "batch_size", 2: "height", 3: "width"}, "timestep": {0: "steps"}, "encoder_hidden_states": {0: "batch_size", 1: "sequence_length"}, "out_sample": {0: "batch_size", 2: "height", 3: "width"}})
    unet_model.save_config(os.path.join(root, "unet"))
    vae.save_config(os.path.join(root, "vae_decoder"))
    vae.save_config(os.path.join(root, "vae_encoder"))
    text.config.save_pretrained(os.path.join(root, "text_encoder"))
print(json.dumps({"torch": torch.__version__, "diffusers": diffusers.__version__, "transformers": transformers.__version__}))
for dirpath, _, files in os.walk(out):
    for f in files:
        print(os.path.join(dirpath, f), os.path.getsize(os.path.join(dirpath, f)))

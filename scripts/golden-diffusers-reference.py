"""
Golden reference for reelbot's pipelines: runs diffusers' own TextToVideoZeroPipeline and
StableDiffusionInstructPix2PixPipeline (Video Instruct-Pix2Pix: the Text2Video-Zero authors'
CrossFrameAttnProcessor for 1 anchor, the same with K anchors' keys/values for Fairy-style editing)
on the committed tiny pipeline test/fixtures/diffusers-pipeline, with every random draw read from a
draws file (the format of `reelbot render|edit --draws`, docs/draws.md), and writes the latents
after every step and the final frames into test/fixtures/golden (read by test/engine/golden.test.ts).

The torch modules are built fresh from the fixture's */config.json and get the committed ONNX
graphs' initializers (the weights map one to one; torch's exporter renamed some: transposed Linear
weights `onnx::MatMul_*`, norm weights `onnx::Mul_*` / `onnx::Add_*`, found again through the node that
reads them, and equal tensors kept once, the others named by Identity nodes). Re-exporting here would give other graphs (see shared/tools/diffusers-cpu).

Every draw and where diffusers takes it:
- x_T: passed as `latents=` (T2V-Zero: frame 0's, [1, 4, h, w]; IP2P: one per frame); the
  pipelines multiply it by `init_noise_sigma` themselves.
- T2V-Zero's forward-jump noise: `forward_loop`'s one `randn_tensor` call per pipeline call, here the
  draws file's `forward_noise` rows of the call's frames 1…
- Euler Ancestral's noise: `step`'s `randn_tensor` call per step, here `step_noise[step]`.
DDIM (eta 0) draws nothing. Any other randn_tensor call fails the script.

Usage (on the CPU set up by shared/tools/diffusers-cpu):
  . /work/diffusers-cpu/env.sh && $PY scripts/golden-diffusers-reference.py test/fixtures/diffusers-pipeline test/fixtures/golden
"""
import json
import os
import struct
import sys
from collections import defaultdict

import hf_cpu_compat  # noqa: F401  (shared/tools/diffusers-cpu: before any tokenizer)
import numpy as np
import onnx
import torch
from onnx import numpy_helper

import diffusers
import diffusers.pipelines.text_to_video_synthesis.pipeline_text_to_video_zero as tvz
import diffusers.schedulers.scheduling_euler_ancestral_discrete as ea_module
from diffusers import (AutoencoderKL, DDIMScheduler, EulerAncestralDiscreteScheduler,
                       StableDiffusionInstructPix2PixPipeline, TextToVideoZeroPipeline, UNet2DConditionModel)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

torch.set_num_threads(1)


def get_attention_scores(self, query, key, attention_mask=None):
    """diffusers' Attention.get_attention_scores without `baddbmm(torch.empty(…), beta=0)`: Debian's torch
    1.13 lets NaNs in that uninitialised memory through on the CPU (whole batches of NaN latents)."""
    scores = torch.bmm(query, key.transpose(-1, -2)) * self.scale
    if attention_mask is not None:
        scores = scores + attention_mask
    return scores.softmax(dim=-1)


diffusers.models.attention_processor.Attention.get_attention_scores = get_attention_scores
FIXTURE, OUT = sys.argv[1], sys.argv[2]
os.makedirs(OUT, exist_ok=True)


# ---------------------------------------------------------------- safetensors (F32 / U8)
def write_safetensors(path, tensors, metadata=None):
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    for name, array in tensors.items():
        array = np.ascontiguousarray(array)
        dtype = {np.dtype("float32"): "F32", np.dtype("uint8"): "U8"}[array.dtype]
        raw = array.astype(array.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":"))
    text += " " * ((8 - len(text.encode()) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text.encode())))
        f.write(text.encode())
        for raw in blobs:
            f.write(raw)


# ---------------------------------------------------------------- ONNX initializers → torch modules
def load_onnx_weights(module, path, onnx_prefix, torch_prefix=""):
    """Copies every parameter of `module` from the ONNX file's initializers; fails on any left over."""
    model = onnx.load(path)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    # The exporter keeps one copy of equal tensors (zero biases, unit norm weights) and names the others
    # through Identity nodes.
    for node in model.graph.node:
        if node.op_type == "Identity" and node.input[0] in inits:
            inits[node.output[0]] = inits[node.input[0]]
    params = dict(module.named_parameters())
    found = {}

    def torch_name(onnx_name):
        name = onnx_name[len(onnx_prefix):] if onnx_name.startswith(onnx_prefix) else onnx_name
        return name if name in params else torch_prefix + name

    for name, array in inits.items():
        if name.startswith(onnx_prefix) and torch_name(name) in params:
            found[torch_name(name)] = array
    readers = defaultdict(list)
    for node in model.graph.node:
        for inp in node.input:
            if inp in inits and inp.startswith("onnx::"):
                readers[inp].append(node)
    for name, nodes in readers.items():
        for node in nodes:
            scope = ".".join(node.name.strip("/").split("/")[:-1])  # /unet/down_blocks.1/…/to_q/MatMul → unet.down_blocks.1.….to_q
            field = {"MatMul": "weight", "Mul": "weight", "Add": "bias"}.get(node.op_type)
            if field is None:
                continue
            target = torch_name(f"{scope}.{field}")
            if target not in params or target in found:
                continue
            array = inits[name].T if node.op_type == "MatMul" else inits[name]
            if array.size != params[target].numel():
                continue
            found[target] = array.reshape(params[target].shape)
    missing = [n for n in params if n not in found]
    if missing:
        raise SystemExit(f"{path}: no initializer for {missing[:8]} ({len(missing)} of {len(params)})")
    with torch.no_grad():
        for name, array in found.items():
            if tuple(array.shape) != tuple(params[name].shape):
                raise SystemExit(f"{path}: {name} is {array.shape} in ONNX, {tuple(params[name].shape)} in torch")
            params[name].copy_(torch.from_numpy(np.array(array, dtype=np.float32)))
    return module.eval()


def config(path):
    with open(path) as f:
        return {k: v for k, v in json.load(f).items() if not k.startswith("_")}


sd = os.path.join(FIXTURE, "sd")
text_config = {k: v for k, v in config(os.path.join(sd, "text_encoder", "config.json")).items() if k not in ("model_type", "transformers_version")}
text_encoder = load_onnx_weights(CLIPTextModel(CLIPTextConfig(**text_config)), os.path.join(sd, "text_encoder", "model.onnx"), "model.", "text_model.")
vae = AutoencoderKL.from_config(config(os.path.join(sd, "vae_decoder", "config.json")))
# One VAE: the decoder half from vae_decoder/model.onnx, the encoder half from vae_encoder/model.onnx.
decoder_params = {n for n, _ in vae.named_parameters() if n.startswith(("decoder.", "post_quant_conv."))}


class Half(torch.nn.Module):
    def __init__(self, vae, keep):
        super().__init__()
        self.vae, self.keep = vae, keep

    def named_parameters(self, *args, **kwargs):
        return [(n, p) for n, p in self.vae.named_parameters() if self.keep(n)]


load_onnx_weights(Half(vae, lambda n: n in decoder_params), os.path.join(sd, "vae_decoder", "model.onnx"), "vae.")
load_onnx_weights(Half(vae, lambda n: n not in decoder_params), os.path.join(sd, "vae_encoder", "model.onnx"), "vae.")
vae.eval()
unet_t2v = load_onnx_weights(UNet2DConditionModel.from_config(config(os.path.join(sd, "unet", "config.json"))), os.path.join(sd, "unet", "model.onnx"), "unet.")
ip2p_dir = os.path.join(FIXTURE, "ip2p", "unet")
unet_ip2p = load_onnx_weights(UNet2DConditionModel.from_config(config(os.path.join(ip2p_dir, "config.json"))), os.path.join(ip2p_dir, "model.onnx"), "unet.")
tokenizer = CLIPTokenizer.from_pretrained(os.path.join(sd, "tokenizer"))
with open(os.path.join(sd, "scheduler", "scheduler_config.json")) as f:
    scheduler_config = json.load(f)


# ---------------------------------------------------------------- replayed draws
class Draws:
    """Hands out the draws file's numbers where diffusers calls randn_tensor."""

    def __init__(self):
        self.queue = []

    def expect(self, *arrays):
        self.queue.extend(arrays)

    def randn_tensor(self, shape, generator=None, device=None, dtype=None, layout=None):
        if not self.queue:
            raise SystemExit(f"an unexpected randn_tensor{tuple(shape)} call: every draw must come from the draws file")
        array = self.queue.pop(0)
        if tuple(array.shape) != tuple(shape):
            raise SystemExit(f"randn_tensor{tuple(shape)} was called where the draws give {array.shape}")
        return torch.from_numpy(np.array(array, dtype=np.float32)).to(dtype or torch.float32)

    def done(self):
        if self.queue:
            raise SystemExit(f"{len(self.queue)} prepared draws were not used")


draws = Draws()
tvz.randn_tensor = draws.randn_tensor
ea_module.randn_tensor = draws.randn_tensor


class Recorder:
    def __init__(self):
        self.points = {}

    def put(self, name, frame, latent):
        self.points.setdefault(name, {}).setdefault(frame, np.array(latent, dtype=np.float32))

    def tensors(self):
        out = {}
        for name, frames in self.points.items():
            if name.startswith("frame0."):
                out[name] = frames[0]
            else:
                out[name] = np.stack([frames[k] for k in range(max(frames) + 1)])
        return out


def to_uint8(images):
    return np.round(np.clip(images, 0, 1) * 255).astype(np.uint8)


H = W = 64
LATENT = (4, H // 8, W // 8)
FRAMES = 8
rng = np.random.default_rng(20261201)
t2v_draws = {"x_T": rng.standard_normal((1, *LATENT), dtype=np.float32), "forward_noise": rng.standard_normal((FRAMES - 1, *LATENT), dtype=np.float32)}
EDIT_STEPS = 10
edit_draws = {"x_T": rng.standard_normal((FRAMES, *LATENT), dtype=np.float32), "step_noise": rng.standard_normal((EDIT_STEPS, FRAMES, *LATENT), dtype=np.float32)}
write_safetensors(os.path.join(OUT, "draws-t2v.safetensors"), t2v_draws, {"what": "Text2Video-Zero draws, 8 frames at 64x64"})
write_safetensors(os.path.join(OUT, "draws-edit.safetensors"), edit_draws, {"what": "clip edit draws, 8 frames at 64x64, 10 steps"})

# The clip to edit: a colour gradient with a bright square moving across, 8 frames of 64×64.
yy, xx = np.mgrid[0:H, 0:W]
clip = np.zeros((FRAMES, H, W, 3), dtype=np.uint8)
for k in range(FRAMES):
    frame = np.stack([xx * 4, yy * 4, (xx + yy + 16 * k) * 2], axis=-1) % 256
    x0, y0 = 6 + 5 * k, 20 + 2 * k
    frame[y0:y0 + 14, x0:x0 + 14] = [250, 240, 40]
    clip[k] = frame
write_safetensors(os.path.join(OUT, "clip.safetensors"), {"frames": clip})


def tokens(text):
    return tokenizer(text, padding="max_length", max_length=77, truncation=True).input_ids


def embedding(text):
    with torch.no_grad():
        return text_encoder(torch.tensor([tokens(text)]))[0][0].numpy()


cases = []


# ---------------------------------------------------------------- Text2Video-Zero
def t2v_case(name, steps, t0, t1, guidance, motion, chunk_size, prompt="a corgi surfing at sunset"):
    scheduler = DDIMScheduler.from_config(scheduler_config)
    pipe = TextToVideoZeroPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet_t2v, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    recorder = Recorder()
    original_processor = tvz.CrossFrameAttnProcessor
    original_encode = pipe.encode_prompt
    if guidance <= 1:
        # diffusers' T2V-Zero cannot run without guidance as it stands: it concatenates the missing
        # negative embeddings (torch.cat([None, text])) and builds its processor for 2 guidance groups.
        # The fix a user would make: no negative half, one group.
        tvz.CrossFrameAttnProcessor = lambda batch_size: original_processor(batch_size=1)
        pipe.encode_prompt = lambda *args, **kwargs: (lambda out: (out[0], out[0][:0]))(original_encode(*args, **kwargs))
    timesteps = None
    frames_out = {}
    # reelbot's chunks: frame 0 and up to chunk_size − 1 others each; every call re-runs frame 0 from the same x_T.
    others = list(range(1, FRAMES))
    chunks = [[0] + others[i:i + chunk_size - 1] for i in range(0, len(others), chunk_size - 1)]
    for frame_ids in chunks:
        draws.expect(t2v_draws["forward_noise"][[k - 1 for k in frame_ids[1:]]])

        def on_step(step_index, t, latents, frame_ids=frame_ids):
            index = int((pipe.scheduler.timesteps == t).nonzero()[0][0])
            if latents.shape[0] == 1:
                recorder.put(f"frame0.{index}", 0, latents[0])
            else:
                for j, frame in enumerate(frame_ids):
                    recorder.put(f"step.{index}", frame, latents[j])

        original_backward = pipe.backward_loop

        def backward_loop(frame_ids=frame_ids, **kwargs):
            if kwargs["latents"].shape[0] > 1:
                for j, frame in enumerate(frame_ids):
                    recorder.put("initial", frame, kwargs["latents"][j])
            return original_backward(**kwargs)

        pipe.backward_loop = backward_loop
        with torch.no_grad():
            result = pipe(prompt=prompt, video_length=len(frame_ids), height=H, width=W, num_inference_steps=steps, guidance_scale=guidance,
                          latents=torch.from_numpy(t2v_draws["x_T"].copy()), motion_field_strength_x=motion[0], motion_field_strength_y=motion[1],
                          t0=t0, t1=t1, frame_ids=frame_ids, callback=on_step, callback_steps=1, output_type="np")
        pipe.backward_loop = original_backward
        draws.done()
        timesteps = [int(t) for t in pipe.scheduler.timesteps]
        for j, frame in enumerate(frame_ids):
            frames_out.setdefault(frame, to_uint8(result.images[j]))
    tvz.CrossFrameAttnProcessor = original_processor
    pipe.encode_prompt = original_encode
    tensors = recorder.tensors()
    tensors["frames"] = np.stack([frames_out[k] for k in range(FRAMES)])
    tensors["text.prompt"] = embedding(prompt)
    tensors["text.uncond"] = embedding("")
    write_safetensors(os.path.join(OUT, f"{name}.safetensors"), tensors)
    cases.append({"name": name, "pipeline": "text-to-video-zero", "draws": "draws-t2v.safetensors", "reference": f"{name}.safetensors",
                  "input": {"prompt": prompt, "numFrames": FRAMES, "numInferenceSteps": steps, "guidanceScale": guidance, "motion": {"dx": motion[0], "dy": motion[1]},
                            "t0": t0, "t1": t1, "height": H, "width": W, "chunkSize": chunk_size},
                  "chunks": chunks, "timesteps": timesteps, "promptTokens": tokens(prompt)})
    print(name, "done", flush=True)


t2v_case("t2v-50-steps", steps=50, t0=44, t1=47, guidance=7.5, motion=(12, 12), chunk_size=5)
t2v_case("t2v-10-steps", steps=10, t0=6, t1=8, guidance=7.5, motion=(20, -12), chunk_size=5)
t2v_case("t2v-10-steps-no-guidance", steps=10, t0=6, t1=8, guidance=0.0, motion=(20, -12), chunk_size=5)


# ---------------------------------------------------------------- Video Instruct-Pix2Pix
class AnchorAttnProcessor:
    """Each frame's self-attention keys/values are its guidance group's anchor frames' (K = 1, anchor 0:
    the authors' CrossFrameAttnProcessor exactly, which is used for it); cross-attention as usual."""

    def __init__(self, groups, anchors):
        self.groups, self.anchors = groups, anchors

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        batch = hidden_states.shape[0]
        query = attn.to_q(hidden_states)
        cross = encoder_hidden_states is not None
        context = encoder_hidden_states if cross else hidden_states
        key, value = attn.to_k(context), attn.to_v(context)
        if not cross:
            frames = batch // self.groups

            def gather(x):
                x = x.reshape(self.groups, frames, *x.shape[1:])
                joined = torch.cat([x[:, a] for a in self.anchors], dim=1)  # [groups, K·tokens, channels]
                return joined[:, None].expand(self.groups, frames, *joined.shape[1:]).reshape(batch, *joined.shape[1:])

            key, value = gather(key), gather(value)
        query, key, value = attn.head_to_batch_dim(query), attn.head_to_batch_dim(key), attn.head_to_batch_dim(value)
        probs = attn.get_attention_scores(query, key, None)
        hidden = attn.batch_to_head_dim(torch.bmm(probs, value))
        return attn.to_out[1](attn.to_out[0](hidden))


def anchor_frames(count):
    return [0] if count == 1 else [int(np.floor(i * (FRAMES - 1) / (count - 1) + 0.5)) for i in range(count)]


def edit_case(name, anchors, scheduler_name, guidance, image_guidance, chunk_size, instruction="make it snowy"):
    if scheduler_name == "ddim":
        scheduler = DDIMScheduler.from_config(scheduler_config)
    else:
        # As reelbot and the authors' diffusers 0.14: linspace timesteps (10 steps: 999, 888, …, 0, whole numbers).
        scheduler = EulerAncestralDiscreteScheduler.from_config(scheduler_config, timestep_spacing="linspace")
    pipe = StableDiffusionInstructPix2PixPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet_ip2p, scheduler=scheduler,
                                                  safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    guided = guidance > 1 and image_guidance >= 1
    groups = 3 if guided else 1
    anchor_list = anchor_frames(anchors)
    processor = tvz.CrossFrameAttnProcessor(batch_size=groups) if anchors == 1 else AnchorAttnProcessor(groups, anchor_list)
    unet_ip2p.set_attn_processor(processor)
    recorder = Recorder()
    image = torch.from_numpy(clip.astype(np.float32) / 127.5 - 1).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        image_latents = vae.encode(image).latent_dist.mode()
    for k in range(FRAMES):
        recorder.put("image", k, image_latents[k])
    x_t = torch.from_numpy(edit_draws["x_T"].copy())
    for k in range(FRAMES):
        recorder.put("initial", k, x_t[k] * scheduler.init_noise_sigma)
    if scheduler_name != "ddim":
        draws.expect(*[edit_draws["step_noise"][i] for i in range(EDIT_STEPS)])

    def on_step(pipe_, index, t, kwargs):
        for k in range(FRAMES):
            recorder.put(f"step.{index}", k, kwargs["latents"][k])
        return {}

    with torch.no_grad():
        result = pipe(prompt=[instruction] * FRAMES, image=image, num_inference_steps=EDIT_STEPS, guidance_scale=guidance, image_guidance_scale=image_guidance,
                      latents=x_t, output_type="np", callback_on_step_end=on_step, callback_on_step_end_tensor_inputs=["latents"])
    draws.done()
    tensors = recorder.tensors()
    tensors["frames"] = to_uint8(result.images)
    tensors["text.prompt"] = embedding(instruction)
    tensors["text.uncond"] = embedding("")
    write_safetensors(os.path.join(OUT, f"{name}.safetensors"), tensors)
    cases.append({"name": name, "pipeline": "video-edit", "draws": "draws-edit.safetensors", "reference": f"{name}.safetensors", "clip": "clip.safetensors",
                  "input": {"instruction": instruction, "width": W, "height": H, "numInferenceSteps": EDIT_STEPS, "guidanceScale": guidance,
                            "imageGuidanceScale": image_guidance, "anchors": anchors, "chunkSize": chunk_size, "scheduler": scheduler_name},
                  "anchorFrames": anchor_list, "timesteps": [float(t) for t in pipe.scheduler.timesteps], "promptTokens": tokens(instruction)})
    print(name, "done", flush=True)


for anchors in (1, 3):
    for scheduler_name in ("euler-ancestral", "ddim"):
        edit_case(f"edit-{anchors}-anchor{'s' if anchors > 1 else ''}-{scheduler_name}", anchors, scheduler_name, 7.5, 1.5, 3)
edit_case("edit-1-anchor-euler-ancestral-no-guidance", 1, "euler-ancestral", 1.0, 1.5, 3)
edit_case("edit-3-anchors-ddim-no-guidance", 3, "ddim", 0.0, 1.5, 3)

with open(os.path.join(OUT, "cases.json"), "w") as f:
    json.dump({"made_by": "scripts/golden-diffusers-reference.py", "torch": torch.__version__, "diffusers": diffusers.__version__,
               "height": H, "width": W, "cases": cases}, f, indent=1)
print(json.dumps({"torch": torch.__version__, "diffusers": diffusers.__version__, "cases": [c["name"] for c in cases]}))

"""zoo's text-to-image pipeline (DiT + VAE) vs a diffusers UNet2DConditionModel pipeline of similar parameter
count: seconds per image, and the VAE decode vs diffusers' own AutoencoderKL.

    python benchmarks/diffusion.py [--threads 2] [--batch 8] [--steps 25] [--vae-batch 64] [--rounds 3] [--quick]
                                   [--json PATH]

Both sides get the CPU recipe's shapes: 16x16x4 latents, 32 px images through a factor-2 VAE, captions of the
recipe's grammar (zoo's CaptionTokenizer on both sides), random weights (nothing is downloaded), fp32, the same
thread count, torch.inference_mode, eval mode; they are measured in the same run, so the printed ratios compare
implementations, not machines. Timing rounds alternate between zoo and its peer and the best round counts, so a
machine that other jobs keep busy slows both alike (the load average is printed; ratios from a quiet machine are
the ones to quote).

  generate  --batch images at --steps steps with classifier-free guidance 4.0 (conditional and unconditional
            rows in one denoiser forward of 2 x batch), decoded to numpy images, seconds per image.
            zoo: TextToImagePipeline(zoo.load("dit-shapes"), zoo.load("vae-shapes")) with scheduler "flow-euler"
            (the recipe's) and output_type="np": tokenizer, text encoder, sampling loop, VAE decode, as `zoo
            imagine` runs it. Peer: diffusers' StableDiffusionPipeline.__call__ loop written out (encode the
            negative "" and the prompts in one text-encoder pass, latents = randn * init_noise_sigma, per step
            cat([latents] * 2), one UNet forward, uncond + g * (cond - uncond), scheduler.step; then
            vae.decode(latents / scaling_factor) and the "np" postprocessing), with
            - a UNet2DConditionModel of SD's layout scaled down to about the DiT's size: blocks (64, 128, 128)
              over 16/8/4 px, CrossAttn-CrossAttn-Down / Up-CrossAttn-CrossAttn, 2 ResNets per block, 4 heads,
              cross-attention to 128-wide text states, SD's timestep embedding (8.75M parameters; the DiT's
              denoiser without its text encoder is 8.70M);
            - a transformers CLIPTextModel of the zoo text encoder's size (2 layers, width 128, 4 heads, MLP 512;
              0.42M vs 0.44M) over the same token ids plus a leading BOS, so its states have the same length
              (1 + max caption words) and width as zoo's;
            - the same scheduler class and config: diffusers' FlowMatchEulerDiscreteScheduler built from the
              DiT's training scheduler (zoo.diffusion.pipeline.build_scheduler, as zoo's side builds it);
            - diffusers' AutoencoderKL of zoo's VAE config with zoo's VAE weights.
            Also timed: one guided denoiser forward (batch 2 x --batch) on each side, the part of a step the
            architectures differ in.
  decode    --vae-batch latents decoded: zoo's vae.decode(latents) vs AutoencoderKL.decode(latents / scale).sample
            with the same config and weights (checked to give the same images). It is the same class, so the ratio
            is zoo's wrapper overhead (about 1.0 expected).

The DiT is zoo.load("dit-shapes")'s init (DiT's zero-initialised output layer and adaLN gates: its prediction is
0, and the computation is the same as a trained model's); the UNet has diffusers' default init.
"""

import argparse
import json
import os

import diffusers
import torch
import transformers
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, UNet2DConditionModel
from diffusers.utils.torch_utils import randn_tensor
from timing import interleaved  # benchmarks/timing.py: run as scripts, benchmarks/ is on sys.path
from transformers import CLIPTextConfig, CLIPTextModel

import zoo
from zoo.diffusion.data import CaptionTokenizer
from zoo.diffusion.pipeline import TextToImagePipeline, build_scheduler

GUIDANCE = 4.0
SCALING_FACTOR = 1.0  # an untrained VAE has none measured; the same on both sides
CAPTIONS = (  # the recipe's caption grammar (the pipeline refuses unknown words)
    "a small red triangle at the top left on a blue background",
    "a large green ring in the centre on a noisy white background",
    "a medium white heart on the right on a black background",
    "a large blue circle at the bottom on a red to yellow gradient background",
)

# The peer's UNet: Stable Diffusion's layout (CrossAttn down blocks, a plain block at the lowest resolution, a
# cross-attention mid block) at three resolutions for 16x16 latents, sized to the DiT's denoiser.
UNET = dict(down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            block_out_channels=(64, 128, 128), layers_per_block=2, norm_num_groups=32,
            attention_head_dim=4)  # diffusers' UNet2DConditionModel reads attention_head_dim as the number of heads
CLIP_MLP = 512  # the peer text encoder's MLP width (CLIP's 4 x width)


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def build_zoo():
    torch.manual_seed(0)
    tokenizer = CaptionTokenizer.build()
    dit = zoo.load("dit-shapes").eval()
    dit.tokenizer = tokenizer
    vae = zoo.load("vae-shapes").eval()
    vae.set_scaling_factor(SCALING_FACTOR)
    return TextToImagePipeline(dit, vae, tokenizer=tokenizer, scheduler="flow-euler")


class UNetPipeline:
    """diffusers' StableDiffusionPipeline.__call__ (encode_prompt, prepare_latents, the denoising loop, decode and
    the "np" postprocessing), written out for a UNet2DConditionModel, a CLIP text encoder over zoo's caption
    tokens, any diffusers scheduler and an AutoencoderKL."""

    def __init__(self, unet, text_encoder, vae, scheduler, tokenizer, bos_id: int):
        self.unet, self.text_encoder, self.vae = unet, text_encoder, vae
        self.scheduler, self.tokenizer, self.bos_id = scheduler, tokenizer, bos_id

    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """(2B, 1 + max_length, width): the negative "" rows first, then the prompts, in one encoder pass."""
        ids, _ = self.tokenizer.encode_batch([""] * len(prompts) + list(prompts))
        ids = torch.cat([torch.full((len(ids), 1), self.bos_id, dtype=ids.dtype), ids], dim=1)
        return self.text_encoder(input_ids=ids).last_hidden_state

    def __call__(self, prompts: list[str], num_inference_steps: int, guidance_scale: float, generator):
        context = self.encode_prompt(prompts)
        self.scheduler.set_timesteps(num_inference_steps)
        c = self.unet.config
        latents = randn_tensor((len(prompts), c.in_channels, c.sample_size, c.sample_size), generator=generator,
                               dtype=torch.float32)
        latents = latents * getattr(self.scheduler, "init_noise_sigma", 1.0)
        for t in self.scheduler.timesteps:
            x = torch.cat([latents] * 2)
            if hasattr(self.scheduler, "scale_model_input"):  # FlowMatchEulerDiscreteScheduler has none
                x = self.scheduler.scale_model_input(x, t)
            noise_pred = self.unet(x, t, encoder_hidden_states=context, return_dict=False)[0]
            uncond, cond = noise_pred.chunk(2)
            noise_pred = uncond + guidance_scale * (cond - uncond)
            latents = self.scheduler.step(noise_pred, t, latents, return_dict=False)[0]
        image = self.vae.decode(latents / self.vae.config.scaling_factor, return_dict=False)[0]
        return (image / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).float().numpy()  # VaeImageProcessor "np"


def build_peer(pipeline: TextToImagePipeline):
    dit, vae, tokenizer = pipeline.dit, pipeline.vae, pipeline.tokenizer
    torch.manual_seed(1)
    c = dit.config
    unet = UNet2DConditionModel(sample_size=c.latent_size, in_channels=c.latent_channels,
                                out_channels=c.latent_channels, cross_attention_dim=c.text.dim, **UNET).eval()
    text = c.text
    bos_id = c.vocab_size - 1  # unused by the caption tokenizer (vocab 42 of the DiT's 128 ids)
    assert bos_id >= tokenizer.vocab_size
    clip = CLIPTextConfig(vocab_size=c.vocab_size, hidden_size=text.dim, intermediate_size=CLIP_MLP,
                          num_hidden_layers=text.n_layers, num_attention_heads=text.n_heads,
                          max_position_embeddings=1 + tokenizer.max_length, pad_token_id=tokenizer.pad_id,
                          bos_token_id=bos_id, eos_token_id=bos_id)
    text_encoder = CLIPTextModel._from_config(clip, attn_implementation="sdpa").eval()
    hf_vae = AutoencoderKL.from_config(vae.autoencoder.config).eval()
    hf_vae.load_state_dict(vae.autoencoder.state_dict())
    scheduler = build_scheduler("flow-euler", c)
    assert type(scheduler) is FlowMatchEulerDiscreteScheduler
    return UNetPipeline(unet, text_encoder, hf_vae, scheduler, tokenizer, bos_id)


def describe(pipeline: TextToImagePipeline, peer: UNetPipeline):
    dit = pipeline.dit
    text = n_params(dit.text_encoder)
    print(f"zoo DiT (dit-shapes): {n_params(dit) / 1e6:.2f}M = denoiser {(n_params(dit) - text) / 1e6:.2f}M + text "
          f"encoder {text / 1e6:.2f}M; {dit.config.latent_size}x{dit.config.latent_size}x{dit.config.latent_channels}"
          f" latents, patch {dit.config.patch_size} ({dit.config.tokens} tokens)")
    print(f"diffusers UNet2DConditionModel {n_params(peer.unet) / 1e6:.2f}M (blocks "
          f"{UNET['block_out_channels']}, {UNET['layers_per_block']} ResNets per block, {UNET['attention_head_dim']} "
          f"heads) + CLIPTextModel {n_params(peer.text_encoder) / 1e6:.2f}M = "
          f"{(n_params(peer.unet) + n_params(peer.text_encoder)) / 1e6:.2f}M")
    print(f"VAE (vae-shapes, both sides diffusers' AutoencoderKL, same weights): {n_params(pipeline.vae) / 1e6:.2f}M, "
          f"factor {pipeline.vae.factor}; text states {1 + pipeline.tokenizer.max_length} x "
          f"{dit.config.text.dim}; scheduler {type(peer.scheduler).__name__} on both sides")


def prompts_of(batch: int) -> list[str]:
    return [CAPTIONS[i % len(CAPTIONS)] for i in range(batch)]


def bench_generate(args, pipeline: TextToImagePipeline, peer: UNetPipeline) -> dict:
    prompts = prompts_of(args.batch)
    size = pipeline.default_size()
    print(f"\n== {args.batch} image(s) of {size} px at {args.steps} steps, guidance {GUIDANCE} (denoiser batch "
          f"{2 * args.batch}), decoded to numpy (best of {args.rounds} interleaved rounds)")

    @torch.inference_mode()
    def zoo_run():
        # guidance at every step, as the peer guides: the same number of denoiser rows on both sides
        images = pipeline(prompts, num_inference_steps=args.steps, guidance_scale=GUIDANCE, guidance_interval=None,
                          output_type="np", generator=torch.Generator().manual_seed(0), progress=False).images
        assert images.shape == (args.batch, size, size, 3), images.shape

    @torch.inference_mode()
    def peer_run():
        images = peer(prompts, args.steps, GUIDANCE, generator=torch.Generator().manual_seed(0))
        assert images.shape == (args.batch, size, size, 3), images.shape

    # one guided denoiser forward each, on the same latents, timestep and prompts
    with torch.inference_mode():
        text = pipeline.encode_prompts(prompts, [""] * len(prompts), 1)
        context = peer.encode_prompt(prompts)
    c = pipeline.dit.config
    x = torch.randn(2 * args.batch, c.latent_channels, c.latent_size, c.latent_size,
                    generator=torch.Generator().manual_seed(2))
    t = torch.tensor(500.0)

    @torch.inference_mode()
    def zoo_forward():
        pipeline.dit.denoise(x, t.expand(len(x)), *text)

    @torch.inference_mode()
    def peer_forward():
        peer.unet(x, t, encoder_hidden_states=context, return_dict=False)

    s = interleaved({"zoo": zoo_run, "peer": peer_run, "zoo forward": zoo_forward, "peer forward": peer_forward},
                    args.rounds, warmup=True)
    z, p = s["zoo"] / args.batch, s["peer"] / args.batch
    print(f"zoo DiT pipeline {z:.3f} s/image   diffusers UNet pipeline {p:.3f} s/image   zoo speed-up {p / z:.2f}x "
          f"(goal >= 1.5x)")
    print(f"    one guided denoiser forward (batch {len(x)}): DiT {s['zoo forward'] * 1e3:.1f} ms   UNet "
          f"{s['peer forward'] * 1e3:.1f} ms   ({s['peer forward'] / s['zoo forward']:.2f}x)")
    return {"zoo_s_per_image": z, "peer_s_per_image": p, "zoo_forward_ms": s["zoo forward"] * 1e3,
            "peer_forward_ms": s["peer forward"] * 1e3}


def bench_decode(args, pipeline: TextToImagePipeline, peer: UNetPipeline) -> dict:
    vae, hf_vae = pipeline.vae, peer.vae
    c = vae.config
    latents = torch.randn(args.vae_batch, c.latent_channels, c.latent_size, c.latent_size,
                          generator=torch.Generator().manual_seed(3))
    print(f"\n== VAE decode of {args.vae_batch} latents {c.latent_channels}x{c.latent_size}x{c.latent_size} -> "
          f"{c.image_size} px (best of {args.rounds} interleaved rounds)")
    with torch.inference_mode():
        same = torch.allclose(vae.decode(latents), hf_vae.decode(latents / hf_vae.config.scaling_factor).sample,
                              atol=1e-5)
    assert same, "zoo's VAE and diffusers' AutoencoderKL with the same weights decode differently"

    @torch.inference_mode()
    def zoo_decode():
        vae.decode(latents)

    @torch.inference_mode()
    def peer_decode():
        hf_vae.decode(latents / hf_vae.config.scaling_factor).sample  # noqa: B018

    s = interleaved({"zoo": zoo_decode, "peer": peer_decode}, args.rounds, warmup=True)
    z, p = s["zoo"] * 1e3, s["peer"] * 1e3
    print(f"zoo vae.decode {z:.1f} ms   diffusers AutoencoderKL.decode {p:.1f} ms   ratio {p / z:.2f}x "
          f"(same images)")
    return {"zoo_decode_ms": z, "peer_decode_ms": p}


def table(args, gen: dict, dec: dict):
    print(f"\n| {args.threads} thread(s), fp32 | zoo | diffusers | diffusers / zoo |\n|---|---|---|---|")
    z, p = gen["zoo_s_per_image"], gen["peer_s_per_image"]
    print(f"| {args.batch} image(s), {args.steps} steps, guidance {GUIDANCE}, s/image | DiT {z:.3f} | UNet {p:.3f} | "
          f"{p / z:.2f}x (goal >= 1.5x) |")
    print(f"| one guided denoiser forward, batch {2 * args.batch}, ms | {gen['zoo_forward_ms']:.1f} | "
          f"{gen['peer_forward_ms']:.1f} | {gen['peer_forward_ms'] / gen['zoo_forward_ms']:.2f}x |")
    print(f"| VAE decode, {args.vae_batch} latents, ms | {dec['zoo_decode_ms']:.1f} | {dec['peer_decode_ms']:.1f} | "
          f"{dec['peer_decode_ms'] / dec['zoo_decode_ms']:.2f}x |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, help="images per pipeline call (default 8; --quick: 2)")
    parser.add_argument("--steps", type=int, help="sampling steps (default 25; --quick: 3)")
    parser.add_argument("--vae-batch", type=int, help="latents per decode (default 64; --quick: 8)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (the best counts)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: one timing round (after the warm-up), smaller batches, 3 steps")
    parser.add_argument("--json", metavar="PATH", help="also write the cases to PATH as JSON (benchmarks/run_all.py; "
                                                       "ratio > 1: zoo ahead)")
    args = parser.parse_args()
    defaults = dict(batch=2, steps=3, vae_batch=8) if args.quick else dict(batch=8, steps=25, vae_batch=64)
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.quick:
        args.rounds = 1
    if min(args.batch, args.steps, args.vae_batch, args.rounds, args.threads) < 1:
        parser.error("--batch, --steps, --vae-batch, --rounds and --threads must be >= 1")

    torch.set_num_threads(args.threads)
    diffusers.utils.logging.set_verbosity_error()
    print(f"torch {torch.__version__}, diffusers {diffusers.__version__}, transformers {transformers.__version__}, "
          f"cpu, {torch.get_num_threads()} threads, fp32, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} "
          f"cores")
    pipeline = build_zoo()
    peer = build_peer(pipeline)
    describe(pipeline, peer)
    gen = bench_generate(args, pipeline, peer)
    dec = bench_decode(args, pipeline, peer)
    table(args, gen, dec)
    if args.json:
        z, p = gen["zoo_s_per_image"], gen["peer_s_per_image"]
        cases = [{"case": f"text-to-image, {args.batch} images, {args.steps} steps, guidance {GUIDANCE} (peer: "
                          f"diffusers UNet2DConditionModel pipeline)", "zoo": z, "peer": p, "unit": "s/image",
                  "ratio": p / z, "target": 1.5},
                 {"case": f"one guided denoiser forward, batch {2 * args.batch} (DiT vs UNet)",
                  "zoo": gen["zoo_forward_ms"], "peer": gen["peer_forward_ms"], "unit": "ms",
                  "ratio": gen["peer_forward_ms"] / gen["zoo_forward_ms"]},
                 {"case": f"VAE decode, {args.vae_batch} latents (peer: AutoencoderKL.decode)",
                  "zoo": dec["zoo_decode_ms"], "peer": dec["peer_decode_ms"], "unit": "ms",
                  "ratio": dec["peer_decode_ms"] / dec["zoo_decode_ms"]}]
        with open(args.json, "w") as f:
            json.dump(cases, f, indent=2)


if __name__ == "__main__":
    main()

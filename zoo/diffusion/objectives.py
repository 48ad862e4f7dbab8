"""What the denoiser learns to predict, on diffusers' schedulers: epsilon, v, or the rectified-flow velocity.

    scheduler = training_scheduler("flow")                 # DDPMScheduler or FlowMatchEulerDiscreteScheduler
    noisy, timesteps, target, weight = corrupt(config, scheduler, latents, noise)
    loss = (weight * mean_squared_error_per_sample(prediction, target)).mean()

DDPM family (Ho et al., 2020), diffusers' DDPMScheduler with `beta_schedule` over `num_train_timesteps`:
x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps with t uniform over the integer steps, and the target
- epsilon: eps, the noise (Ho et al., eq. 14);
- v_prediction: v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0 (Salimans & Ho, 2022, sec. 4), the scheduler's
  get_velocity; it stays well scaled at both ends of the schedule, where eps-prediction's x_0 estimate explodes.
Weighting `min_snr` (Hang et al., 2023, "Efficient Diffusion Training via Min-SNR Weighting Strategy"): the
per-sample loss is scaled by min(SNR_t, gamma) / SNR_t for epsilon and min(SNR_t, gamma) / (SNR_t + 1) for v, so
the nearly-clean steps, easy and numerous, stop dominating the gradient (gamma = 5 in the paper).

Rectified flow (Liu et al., 2023; Esser et al., 2024, "Scaling Rectified Flow Transformers", SD3), diffusers'
FlowMatchEulerDiscreteScheduler: x_sigma = (1 - sigma) x_0 + sigma eps on a straight line, the target the
velocity eps - x_0, and the model sees timestep = sigma * num_train_timesteps (the scheduler's convention).
Weighting `logit_normal` is SD3's timestep density: sigma = sigmoid(u), u ~ N(logit_mean, logit_std), which puts
the training steps in the middle of the path, where the velocity is hardest to predict (their sec. 3.1, best in
their table 1); `none` draws sigma uniformly in [0, 1].
"""

import functools

import torch

from zoo.errors import InputError

OBJECTIVES = ("epsilon", "v_prediction", "flow")
WEIGHTINGS = {"epsilon": ("none", "min_snr"), "v_prediction": ("none", "min_snr"), "flow": ("none", "logit_normal")}


@functools.lru_cache(maxsize=8)
def training_scheduler(objective: str, num_train_timesteps: int = 1000, beta_schedule: str = "scaled_linear"):
    """The diffusers scheduler that defines the forward process (a DiTConfig's objective, num_train_timesteps
    and beta_schedule), built once per process: training only reads its tables. Sampling schedulers are built
    from its config (zoo.diffusion.pipeline)."""
    from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler  # diffusers costs seconds at import

    if objective not in OBJECTIVES:
        raise InputError(f"objective {objective!r}; allowed: {', '.join(OBJECTIVES)}")
    if objective == "flow":
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=num_train_timesteps, shift=1.0)
    return DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule,
                         prediction_type=objective, clip_sample=False)


def corrupt(config, scheduler, latents: torch.Tensor, noise: torch.Tensor,
            generator: torch.Generator | None = None):
    """A training example of the forward process for each clean latent: (noisy latents, timesteps (B,) as the
    model sees them, the target, the per-sample loss weight (B,)). Random draws use `generator` (a CPU generator;
    None: torch's global one, which the trainer seeds)."""
    B = latents.shape[0]
    device = latents.device
    if config.objective == "flow":
        if config.weighting == "logit_normal":
            u = torch.randn(B, generator=generator) * config.logit_std + config.logit_mean
            sigmas = torch.sigmoid(u)
        else:
            sigmas = torch.rand(B, generator=generator)
        sigmas = sigmas.to(device)
        s = sigmas.view(B, 1, 1, 1).to(latents.dtype)
        noisy = (1 - s) * latents + s * noise
        return noisy, sigmas * config.num_train_timesteps, noise - latents, torch.ones(B, device=device)

    steps = torch.randint(0, config.num_train_timesteps, (B,), generator=generator).to(device)
    noisy = scheduler.add_noise(latents, noise, steps)
    target = noise if config.objective == "epsilon" else scheduler.get_velocity(latents, noise, steps)
    weight = torch.ones(B, device=device)
    if config.weighting == "min_snr":
        abar = scheduler.alphas_cumprod.to(device)[steps]
        snr = abar / (1 - abar)
        clipped = snr.clamp(max=config.min_snr_gamma)
        weight = clipped / snr if config.objective == "epsilon" else clipped / (snr + 1)
    return noisy, steps.float(), target, weight


def mean_squared_error_per_sample(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, ...) -> (B,) mean over every element but the batch, in float32."""
    return (prediction.float() - target.float()).square().flatten(1).mean(dim=1)

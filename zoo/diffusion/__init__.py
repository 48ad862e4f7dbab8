"""zoo.diffusion: latent diffusion text-to-image (not built yet; see the README status table)."""

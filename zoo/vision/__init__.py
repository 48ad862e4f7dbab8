"""zoo.vision: the AlexNet-era CNN baseline and a ViT on the shared backbone."""

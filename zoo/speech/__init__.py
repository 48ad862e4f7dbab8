"""zoo.speech: Whisper-style multitask speech (not built yet; see the README status table)."""

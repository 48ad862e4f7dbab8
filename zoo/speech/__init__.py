"""zoo.speech: a Whisper-style multitask speech model (transcribe, translate to English, language ID,
no-speech) on the shared backbone, trained on speech it synthesises with eSpeak NG."""

"""zoo.text: the GPT family (model, tokenizers, corpora, generation)."""

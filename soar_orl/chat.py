"""The one way a user message becomes a prompt: the tokenizer's chat template with the
assistant's turn opened. Teacher, student workers, pretraining and measurements all use it, so a
model sees the same prompt text wherever it is trained or sampled."""


def chat_prompt(tokenizer, text: str) -> str:
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
    )

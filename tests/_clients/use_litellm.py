"""litellm's usage, once through each provider a Metis user would pick (one process: importing
litellm takes seconds): ``sambanova/`` reads SAMBANOVA_API_KEY and SAMBANOVA_API_BASE; ``openai/``
reads OPENAI_API_KEY and OPENAI_BASE_URL, else OPENAI_API_BASE."""
import os

import litellm

for provider in ("sambanova", "openai"):
    response = litellm.completion(model=f"{provider}/{os.environ['MODEL_NAME']}", messages=[{"role": "user", "content": "Hello"}])
    print(response.choices[0].message.content)

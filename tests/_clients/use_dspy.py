"""DSPy's LM with litellm's ``openai/`` provider: litellm reads OPENAI_API_KEY and OPENAI_BASE_URL,
else OPENAI_API_BASE."""
import os

import dspy

lm = dspy.LM("openai/" + os.environ["MODEL_NAME"])
print(lm("Hello")[0])

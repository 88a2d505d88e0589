"""smolagents' OpenAIServerModel as its docs show it, without flatten_messages_as_text: each message's
content goes out as a list of parts, which Metis refuses (422)."""
import os

from smolagents import OpenAIServerModel

model = OpenAIServerModel(model_id=os.environ["MODEL_NAME"])
messages = [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}]
print(model(messages).content)

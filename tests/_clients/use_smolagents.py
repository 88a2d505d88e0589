"""smolagents' OpenAIServerModel: its openai client reads OPENAI_API_KEY and OPENAI_BASE_URL;
flatten_messages_as_text=True sends each message's content as a string, which Metis requires."""
import os

from smolagents import OpenAIServerModel

model = OpenAIServerModel(model_id=os.environ["MODEL_NAME"], flatten_messages_as_text=True)
messages = [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}]
print(model(messages).content)

"""openai's README usage: the client reads OPENAI_BASE_URL and OPENAI_API_KEY."""
import os

from openai import OpenAI

client = OpenAI()
completion = client.chat.completions.create(model=os.environ["MODEL_NAME"], messages=[{"role": "user", "content": "Hello"}])
print(completion.choices[0].message.content)

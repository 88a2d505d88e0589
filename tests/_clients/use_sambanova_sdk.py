"""The SambaNova SDK's README usage, plain and streamed: SambaNova() reads SAMBANOVA_API_KEY and
SAMBA_NOVA_BASE_URL."""
import os

from sambanova import SambaNova

client = SambaNova()
messages = [{"role": "user", "content": "Hello"}]
completion = client.chat.completions.create(model=os.environ["MODEL_NAME"], messages=messages)
print(completion.choices[0].message.content)
stream = client.chat.completions.create(model=os.environ["MODEL_NAME"], messages=messages, stream=True)
print("".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices))

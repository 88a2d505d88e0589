"""The SambaNova SDK's README usage: SambaNova() reads SAMBANOVA_API_KEY and SAMBA_NOVA_BASE_URL."""
import os

from sambanova import SambaNova

client = SambaNova()
completion = client.chat.completions.create(model=os.environ["MODEL_NAME"], messages=[{"role": "user", "content": "Hello"}])
print(completion.choices[0].message.content)

"""The official OpenAI and Anthropic SDKs, unchanged but for base_url and api_key, talking to
tenant-agent's egress proxy. Driven by tenant-agent's integration tests (tests/it/sdk.rs).

Environment: PROXY_URL (http://127.0.0.1:PORT), PROXY_TOKEN, LEAK_A and LEAK_B (business
secrets the test put in the vault; they go into prompts and tool results here, and must never
reach the upstream), EXPECTED_REPLY (what the fake upstream answers).
Prints one JSON object with what each call returned; exits non-zero on any SDK error.
"""

import base64
import json
import os
import sys
import urllib.parse

import anthropic
import openai

url = os.environ["PROXY_URL"]
token = os.environ["PROXY_TOKEN"]
leak_a = os.environ["LEAK_A"]
leak_b = os.environ["LEAK_B"]
expected = os.environ["EXPECTED_REPLY"]

results = {}


def check(name, got):
    results[name] = got
    if got != expected:
        print(f"{name}: expected {expected!r}, got {got!r}", file=sys.stderr)
        sys.exit(1)


oa = openai.OpenAI(base_url=f"{url}/openai/v1", api_key=token, max_retries=0)
messages = [
    {"role": "system", "content": f"The warehouse DB password is {leak_a}."},
    {"role": "user", "content": "Send the report; basic auth header: "
        + base64.b64encode(f"ops:{leak_b}".encode()).decode()},
    {"role": "assistant", "content": None, "tool_calls": [{
        "id": "call_1", "type": "function",
        "function": {"name": "shell", "arguments": json.dumps({"cmd": f"mysql -p'{leak_a}' shop"})}}]},
    {"role": "tool", "tool_call_id": "call_1",
     "content": f"ok\nSMTP_URL=smtp://ops:{urllib.parse.quote(leak_b, safe='')}@mail\nDB={leak_a}"},
]

chat = oa.chat.completions.create(model="gpt-4o-mini", messages=messages)
check("openai.chat", chat.choices[0].message.content)
results["openai.chat.usage"] = chat.usage.model_dump()

# Streaming without asking for usage: the proxy asks for it and strips the extra chunk, so
# code that indexes choices[0] on every chunk keeps working.
text = ""
for chunk in oa.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True):
    text += chunk.choices[0].delta.content or ""
check("openai.chat.stream", text)

# Streaming with usage asked for: the client gets the usage chunk.
usage = None
text = ""
for chunk in oa.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True,
                                        stream_options={"include_usage": True}):
    if chunk.choices:
        text += chunk.choices[0].delta.content or ""
    if chunk.usage:
        usage = chunk.usage.model_dump()
check("openai.chat.stream_usage", text)
results["openai.chat.stream_usage.usage"] = usage

resp = oa.responses.create(model="gpt-4.1", input=f"remember {leak_b}")
check("openai.responses", resp.output_text)
text = ""
with oa.responses.stream(model="gpt-4.1", input=f"remember {leak_a}") as stream:
    for event in stream:
        if event.type == "response.output_text.delta":
            text += event.delta
check("openai.responses.stream", text)

emb = oa.embeddings.create(model="text-embedding-3-small", input=f"{leak_a} {leak_b}")
results["openai.embeddings"] = emb.data[0].embedding
results["openai.models"] = [m.id for m in oa.models.list()]

try:
    openai.OpenAI(base_url=f"{url}/openai/v1", api_key="wrong", max_retries=0).models.list()
    print("a wrong token was accepted", file=sys.stderr)
    sys.exit(1)
except openai.AuthenticationError as e:
    results["openai.wrong_token"] = e.status_code

an = anthropic.Anthropic(base_url=f"{url}/anthropic", api_key=token, max_retries=0)
a_messages = [
    {"role": "user", "content": f"Log in with {leak_a}"},
    {"role": "assistant", "content": [{"type": "tool_use", "id": "tu_1", "name": "read_env", "input": {}}]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu_1",
                                  "content": f"SMTP_PASSWORD={leak_b}\nDB_PASSWORD=\"{leak_a}\""}]},
]
msg = an.messages.create(model="claude-sonnet-4-5", max_tokens=256,
                         system=f"secret: {leak_b}", messages=a_messages)
check("anthropic.messages", msg.content[0].text)
results["anthropic.messages.usage"] = msg.usage.model_dump()

with an.messages.stream(model="claude-sonnet-4-5", max_tokens=256, messages=a_messages) as stream:
    text = "".join(stream.text_stream)
    final = stream.get_final_message()
check("anthropic.messages.stream", text)
results["anthropic.messages.stream.usage"] = final.usage.model_dump()

count = an.messages.count_tokens(model="claude-sonnet-4-5", messages=a_messages)
results["anthropic.count_tokens"] = count.input_tokens

try:
    anthropic.Anthropic(base_url=f"{url}/anthropic", api_key="wrong", max_retries=0).messages.create(
        model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    print("a wrong token was accepted", file=sys.stderr)
    sys.exit(1)
except anthropic.AuthenticationError as e:
    results["anthropic.wrong_token"] = e.status_code

print(json.dumps(results))

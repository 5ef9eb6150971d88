// The official `openai` npm package against adainfer-openai: completions,
// chat, streaming of both, the model list and an error. Run by test_npm.py
// from the folder it installed the package into; exits non-zero on failure.
import OpenAI from 'openai';

const base = process.env.OAI_BASE_URL;
const model = process.env.OAI_MODEL;
const want = JSON.parse(process.env.OAI_WANT);
const client = new OpenAI({ apiKey: 'not-needed', baseURL: base + '/v1', maxRetries: 0 });
let failed = 0;

function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

async function run(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    console.log(`ok   ${name.padEnd(24)} ${((Date.now() - t0) / 1000).toFixed(2)}s`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name.padEnd(24)} ${e && e.stack ? e.stack : e}`);
  }
}

await run('models.list', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  check(ids.includes(model) && ids.includes(model + ':sst2'), 'ids ' + JSON.stringify(ids));
});

await run('completions', async () => {
  const r = await client.completions.create({
    model: model + ':sst2', prompt: want.prompt, max_tokens: 4, temperature: 0,
  });
  check(r.object === 'text_completion', 'object ' + r.object);
  check(r.choices[0].text === want.text, `text ${JSON.stringify(r.choices[0].text)}`);
  check(r.usage.prompt_tokens === want.n_prompt, 'usage ' + JSON.stringify(r.usage));
  check(Array.isArray(r.adainfer.exit_layers), 'no adainfer extension');
});

await run('completions stream', async () => {
  const s = await client.completions.create({
    model: model + ':sst2', prompt: want.prompt, max_tokens: 4, temperature: 0, stream: true,
  });
  let text = '', finish = null, n = 0;
  for await (const ch of s) {
    n++;
    text += ch.choices[0].text;
    if (ch.choices[0].finish_reason) finish = ch.choices[0].finish_reason;
  }
  check(text === want.text, `streamed ${JSON.stringify(text)} in ${n} chunks`);
  check(finish === 'stop' || finish === 'length', 'finish ' + finish);
});

const messages = [
  { role: 'system', content: 'Answer in one word.' },
  { role: 'user', content: want.prompt },
];

await run('chat', async () => {
  const r = await client.chat.completions.create({
    model: model + ':sst2', messages, max_tokens: 5, temperature: 0,
    adainfer: { template: 'chatml' },
  });
  check(r.object === 'chat.completion', 'object ' + r.object);
  check(r.choices[0].message.role === 'assistant', 'role');
  check(r.choices[0].message.content === want.chat_text,
        `content ${JSON.stringify(r.choices[0].message.content)} vs ${JSON.stringify(want.chat_text)}`);
  check(r.usage.total_tokens === r.usage.prompt_tokens + r.usage.completion_tokens, 'usage');
});

await run('chat stream', async () => {
  const s = await client.chat.completions.create({
    model: model + ':sst2', messages, max_tokens: 5, temperature: 0, stream: true,
    stream_options: { include_usage: true }, adainfer: { template: 'chatml' },
  });
  let text = '', usage = null;
  for await (const ch of s) {
    if (ch.choices.length) text += ch.choices[0].delta.content ?? '';
    if (ch.usage) usage = ch.usage;
  }
  check(text === want.chat_text, `streamed ${JSON.stringify(text)}`);
  check(usage && usage.completion_tokens > 0, 'usage ' + JSON.stringify(usage));
});

await run('errors', async () => {
  try {
    await client.completions.create({ model: 'gpt-4', prompt: 'x' });
    check(false, 'an unknown model was accepted');
  } catch (e) {
    check(e instanceof OpenAI.NotFoundError, 'not a NotFoundError: ' + e);
    check(e.status === 404 && e.code === 'model_not_found', `status ${e.status} code ${e.code}`);
  }
  try {
    await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'x' }],
                                           n: 2 });
    check(false, 'n=2 was accepted');
  } catch (e) {
    check(e instanceof OpenAI.BadRequestError && e.param === 'n', 'bad request: ' + e);
  }
});

process.exit(failed ? 1 : 0);

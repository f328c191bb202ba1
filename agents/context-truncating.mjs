#!/usr/bin/env node
// A context-managing lookup agent: like kv-lookup, but it keeps only the task and its latest tool
// call with the result, dropping older exchanges before each call. Its later calls therefore do not
// extend the earlier ones: the gateway sees them fork. It does not announce its truncation (a black
// box); compare sdk-agent, which registers its context steps. Task: { prompt, store }.
import OpenAI from 'openai';
import { assistantMessage, kvTool, MODEL, runProgram, toolArguments } from './common.mjs';

const MAX_TURNS = 6;
const MAX_TOKENS = 32;
const TOOLS = [{ type: 'function', function: { name: 'get', parameters: { type: 'object', properties: { k: { type: 'string' } } } } }];

async function solve({ baseURL, apiKey }, task) {
  const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 120_000 });
  const question = { role: 'user', content: task.prompt };
  let latest = []; // the last exchange: the assistant's tool call and its results
  let toolCalls = 0, turns = 0;
  while (turns < MAX_TURNS) {
    const messages = [question, ...latest];
    const reply = await client.chat.completions.create({ model: MODEL, messages, tools: TOOLS, max_tokens: MAX_TOKENS });
    turns++;
    const message = reply.choices[0].message;
    if (message.tool_calls?.length) {
      latest = [assistantMessage(message)];
      for (const call of message.tool_calls) {
        const result = call.function.name === 'get' ? kvTool(task.store, toolArguments(call).k) : 'error';
        latest.push({ role: 'tool', tool_call_id: call.id, content: result });
        toolCalls++;
      }
      continue;
    }
    const text = (message.content ?? '').trim();
    if (text !== '') return { answer: text, toolCalls, turns };
  }
  return { answer: null, toolCalls, turns };
}

runProgram(solve);

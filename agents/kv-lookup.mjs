#!/usr/bin/env node
// A multi-turn lookup agent against a small key-value tool: the official `openai` client, the whole
// history on every call. The model calls get({"k": "<key>"}); a value "@<key>" is a reference the
// model must look up next; the first plain value it answers with is the final answer. A reply with
// neither a tool call nor text is asked again. Task: { prompt, store }.
import OpenAI from 'openai';
import { assistantMessage, kvTool, MODEL, runProgram, toolArguments } from './common.mjs';

const MAX_TURNS = 5;
const MAX_TOKENS = 32;
const TOOLS = [{ type: 'function', function: { name: 'get', parameters: { type: 'object', properties: { k: { type: 'string' } } } } }];

async function solve({ baseURL, apiKey }, task) {
  const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 120_000 });
  const messages = [{ role: 'user', content: task.prompt }];
  let toolCalls = 0, turns = 0;
  while (turns < MAX_TURNS) {
    const reply = await client.chat.completions.create({ model: MODEL, messages, tools: TOOLS, max_tokens: MAX_TOKENS });
    turns++;
    const message = reply.choices[0].message;
    if (message.tool_calls?.length) {
      messages.push(assistantMessage(message));
      for (const call of message.tool_calls) {
        const result = call.function.name === 'get' ? kvTool(task.store, toolArguments(call).k) : 'error';
        messages.push({ role: 'tool', tool_call_id: call.id, content: result });
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

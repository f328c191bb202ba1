#!/usr/bin/env node
// A ReAct tool loop with a calculator: the official `openai` client against an OpenAI-compatible base
// URL; every model call sends the whole history, so each call continues the previous one. The model
// either calls calc({"e": "<expression>"}) (the loop runs it and sends the result back) or answers
// with text, which is the final answer. A reply with neither (e.g. only a malformed tool call) is
// asked again. Task: { prompt }.
import OpenAI from 'openai';
import { assistantMessage, calcTool, MODEL, runProgram, toolArguments } from './common.mjs';

const MAX_TURNS = 4;
const MAX_TOKENS = 32;
const TOOLS = [{ type: 'function', function: { name: 'calc', parameters: { type: 'object', properties: { e: { type: 'string' } } } } }];

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
        const result = call.function.name === 'calc' ? calcTool(toolArguments(call).e) : 'error';
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

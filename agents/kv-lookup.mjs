#!/usr/bin/env node
// A multi-turn lookup agent against a small key-value tool: the official `openai` client, the whole
// history on every call. The model calls get({"k": "<key>"}); a value "@<key>" is a reference the
// model must look up next; the first plain value it answers with is the final answer. A reply with
// neither a tool call nor text is asked again. Task: { prompt, store }.
import { kvTool, runProgram, toolLoop } from './common.mjs';

runProgram(toolLoop({ name: 'get', argument: 'k', run: (task, k) => kvTool(task.store, k), maxTurns: 5 }));

#!/usr/bin/env node
// A ReAct tool loop with a calculator: the official `openai` client against an OpenAI-compatible base
// URL; every model call sends the whole history, so each call continues the previous one. The model
// either calls calc({"e": "<expression>"}) (the loop runs it and sends the result back) or answers
// with text, which is the final answer. A reply with neither (e.g. only a malformed tool call) is
// asked again. Task: { prompt }.
import { calcTool, runProgram, toolLoop } from './common.mjs';

runProgram(toolLoop({ name: 'calc', argument: 'e', run: (task, e) => calcTool(e), maxTurns: 4 }));

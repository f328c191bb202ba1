#!/usr/bin/env node
// A context-managing lookup agent: like kv-lookup, but it keeps only the task and its latest tool
// call with the result, dropping older exchanges before each call. Its later calls therefore do not
// extend the earlier ones: the gateway sees them fork. It does not announce its truncation (a black
// box); compare sdk-agent, which registers its context steps. Task: { prompt, store }.
import { kvTool, runProgram, toolLoop } from './common.mjs';

runProgram(toolLoop({ name: 'get', argument: 'k', run: (task, k) => kvTool(task.store, k), maxTurns: 6, history: 'latest' }));

// The white-box agent: written with forge-rl's own SDK (lib/agents/sdk.ts). It solves key-value
// lookups like kv-lookup, and manages its context: when a lookup returns a reference "@<key>", it
// summarises everything so far into one fresh question about the referenced key, and registers that
// summarize step with the gateway before its next call, so the fork is recorded as intended.
// Run: node --import tsx agents/sdk-agent.ts --serve (or --task, as the other agents; see common.mjs).
import { ForgeAgent } from '../lib/agents/sdk.js';
import { kvTool, MODEL, runProgram, type AgentResult, type Connection } from './common.mjs';

const MAX_TURNS = 6;
const question = (key: string) => `Get the value of ${key}.`;

async function solve(connection: Connection, task: { prompt: string; store: Record<string, string> }): Promise<AgentResult> {
  const agent = new ForgeAgent({ model: MODEL, maxTokens: 32 }).tool(
    { type: 'function', function: { name: 'get', parameters: { type: 'object', properties: { k: { type: 'string' } } } } },
    (args) => kvTool(task.store, args.k),
  );
  const session = agent.session(connection, [{ role: 'user', content: task.prompt }]);
  while (session.turns < MAX_TURNS) {
    const reply = await session.chat();
    if (reply.toolCalls.length > 0) {
      const results = await session.runTools(reply);
      const ref = results.find((r) => r.startsWith('@'));
      if (ref !== undefined) {
        const from = session.messages[0].content as string, to = question(ref.slice(1));
        await session.contextStep({ kind: 'summarize', messages: [{ role: 'user', content: to }], detail: `${from} -> ${to}` });
      }
      continue;
    }
    if (reply.content.trim() !== '') return { answer: reply.content.trim(), toolCalls: session.toolCalls, turns: session.turns };
  }
  return { answer: null, toolCalls: session.toolCalls, turns: session.turns };
}

runProgram(solve);

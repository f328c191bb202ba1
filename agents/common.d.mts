// Types of agents/common.mjs for the TypeScript agent (sdk-agent.ts).
export interface AgentResult {
  answer: string | null;
  toolCalls: number;
  turns: number;
  error?: string;
}
export interface Connection {
  baseURL: string;
  apiKey: string;
}
export function calcTool(expression: unknown): string;
export function kvTool(store: unknown, key: unknown): string;
export function toolArguments(call: { function: { arguments: string } }): Record<string, unknown>;
export function assistantMessage(message: unknown): Record<string, unknown>;
export const MODEL: string;
export function runProgram(solve: (connection: Connection, task: any) => Promise<AgentResult>): Promise<void>;

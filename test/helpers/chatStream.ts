// Reads an OpenAI chat-completion stream the way agent frameworks assemble it: the text, the tool
// calls joined from their deltas by index, the finish reason, the per-token logprobs, and whether a
// usage chunk came.
import type OpenAI from 'openai';

export type StreamedToolCall = { id: string; type: 'function'; function: { name: string; arguments: string } };

export async function readChatStream(stream: AsyncIterable<OpenAI.Chat.ChatCompletionChunk>) {
  let content = '', finish: string | null = null, sawUsage = false;
  const calls: StreamedToolCall[] = [];
  const logprobs: number[] = [];
  for await (const chunk of stream) {
    if (chunk.usage) sawUsage = true;
    for (const ch of chunk.choices) {
      content += ch.delta.content ?? '';
      for (const t of ch.delta.tool_calls ?? []) {
        calls[t.index] ??= { id: '', type: 'function', function: { name: '', arguments: '' } };
        calls[t.index].id ||= t.id ?? '';
        calls[t.index].function.name += t.function?.name ?? '';
        calls[t.index].function.arguments += t.function?.arguments ?? '';
      }
      for (const l of ch.logprobs?.content ?? []) logprobs.push(l.logprob);
      finish = ch.finish_reason ?? finish;
    }
  }
  return { content, calls, finish, sawUsage, logprobs };
}

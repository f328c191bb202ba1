// With an external upstream (vLLM, SGLang) the demo does not train in-process: each batch the
// scheduler and the batch builder produce is exported for an external trainer, one JSON line per
// sample (a trainable call): its tokens, the sampling logprobs and per-token policy versions, the
// advantage (group-normalised, times the staleness weight), the step and the group it belongs to.
// The step's prefix-tree layout is left to the trainer (it rebuilds it with forge's kernels).
import { closeSync, openSync, writeSync } from 'node:fs';
import type { RlStep } from './rlLoop.js';

export class BatchExporter {
  private fd: number | null;
  lines = 0;

  constructor(readonly path: string) {
    this.fd = openSync(path, 'a');
  }

  write(step: RlStep): void {
    if (this.fd === null) throw new Error(`BatchExporter ${this.path}: closed`);
    const calls = new Map<string, { promptIds: Int32Array; completionIds: Int32Array; logprobs: Float32Array; versions: Int32Array }>();
    for (const r of step.releases) for (const t of r.trajectories) for (const c of t.rollout.trajectory.calls) calls.set(c.id, c);
    let text = '';
    for (const s of step.batch.samples) {
      const c = calls.get(s.callId);
      if (!c) continue;
      const group = step.batch.groups[s.group];
      text += JSON.stringify({
        step: step.step, group_id: group?.groupId ?? null, task_id: group?.taskId ?? null, session_id: s.sessionId, call_id: s.callId, call_index: s.callIndex,
        advantage: s.advantage * s.weight, version: s.version,
        prompt_ids: Array.from(c.promptIds), completion_ids: Array.from(c.completionIds),
        logprobs: Array.from(c.logprobs), versions: Array.from(c.versions),
      }) + '\n';
      this.lines++;
    }
    if (text) writeSync(this.fd, text);
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}

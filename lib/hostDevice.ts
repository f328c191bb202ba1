// The host-array kernels' `backend: 'cuda'` path (lib/backend.ts decides when): upload the arguments,
// run the device kernel in float32, download the results in the CPU path's shapes, free every device
// tensor (also when a call throws). The callers have checked the arguments already; what the device
// kernels trust (tree layout, node ids, a finite forward lse) is checked here on the host, so bad input
// gets the same coded error as on the CPU. The device calls block until the device is done.
import type { AttentionGrads, AttentionOutput, AttentionState } from './attention.js';
import { DEVICE_HEAD_DIMS, treeAttentionBackwardDevice, treeAttentionDevice } from './attentionDevice.js';
import type { CispoOptions, CispoResult, PolicyLossTerms } from './cispo.js';
import {
  cispoLossDevice, DeviceTensor, gatherToSamplesDevice, mergeStatesCsrDevice, mergeStatesDevice, scatterFromSamplesDevice,
} from './device.js';
import { rangeError } from './errors.js';
import { addon } from './native.js';
import { expectAllFinite } from './validate.js';

/** The attention shape the callers have checked. */
export interface AttentionShape {
  n: number;
  hq: number;
  hkv: number;
  d: number;
  scale: number;
}

/** Why the device kernels cannot serve an attention call of head dim `d`, or undefined. */
export function attentionUnsupported(d: number): string | undefined {
  return DEVICE_HEAD_DIMS.includes(d) ? undefined : `the GPU kernels serve head dim ${DEVICE_HEAD_DIMS.join(' or ')}, got ${d}`;
}

interface Scope {
  /** Uploads host data; freed when the scope ends. */
  up(data: Float32Array | Int32Array, shape: number[]): DeviceTensor;
  /** Frees these (a kernel's outputs) when the scope ends. */
  own(...tensors: (DeviceTensor | undefined)[]): void;
}

/** Runs `body`, then frees every tensor it uploaded or owned, whether it returned or threw. */
function onDevice<T>(body: (scope: Scope) => T): T {
  const owned: DeviceTensor[] = [];
  const own = (...tensors: (DeviceTensor | undefined)[]) => {
    for (const t of tensors) if (t) owned.push(t);
  };
  const freeAll = () => {
    let failure: unknown;
    for (const t of owned) {
      try {
        t.free();
      } catch (e) {
        failure ??= e;
      }
    }
    return failure;
  };
  let result: T;
  try {
    const up = (data: Float32Array | Int32Array, shape: number[]) => {
      const t = DeviceTensor.upload(data, shape);
      owned.push(t);
      return t;
    };
    result = body({ up, own });
  } catch (e) {
    freeAll();  // the kernel's error is the one to report
    throw e;
  }
  const failure = freeAll();
  if (failure !== undefined) throw failure;
  return result;
}

const floats = (t: DeviceTensor) => t.download() as Float32Array;

export function treeAttentionOnDevice(
  q: Float32Array, k: Float32Array, v: Float32Array, parent: Int32Array, subtreeEnd: Int32Array, s: AttentionShape,
): AttentionOutput {
  addon.treeValidate(parent, subtreeEnd, false);  // the device trusts subtreeEnd
  return onDevice(({ up, own }) => {
    const options = { numHeads: s.hq, numKvHeads: s.hkv, headDim: s.d, scale: s.scale };
    const out = treeAttentionDevice(up(q, [s.n, s.hq, s.d]), up(k, [s.n, s.hkv, s.d]), up(v, [s.n, s.hkv, s.d]), up(subtreeEnd, [s.n]), options);
    own(out.o, out.lse);
    return { o: floats(out.o), lse: floats(out.lse) };
  });
}

export function treeAttentionBackwardOnDevice(
  q: Float32Array, k: Float32Array, v: Float32Array, parent: Int32Array, subtreeEnd: Int32Array,
  forward: AttentionOutput, dO: Float32Array, s: AttentionShape,
): AttentionGrads {
  addon.treeValidate(parent, subtreeEnd, false);
  expectAllFinite('forward.lse', forward.lse);  // the CPU kernel checks it; the device kernel does not
  return onDevice(({ up, own }) => {
    const options = { numHeads: s.hq, numKvHeads: s.hkv, headDim: s.d, scale: s.scale };
    const fwd = { o: up(forward.o, [s.n, s.hq, s.d]), lse: up(forward.lse, [s.n, s.hq]) };
    const g = treeAttentionBackwardDevice(
      up(q, [s.n, s.hq, s.d]), up(k, [s.n, s.hkv, s.d]), up(v, [s.n, s.hkv, s.d]), up(subtreeEnd, [s.n]), fwd,
      up(dO, [s.n, s.hq, s.d]), options,
    );
    own(g.dq, g.dk, g.dv);
    return { dq: floats(g.dq), dk: floats(g.dk), dv: floats(g.dv) };
  });
}

/** cispoLoss on the device. `grad` / `inPlace` as resolved by the caller; with inPlace, dlogits is `logits`. */
export function cispoLossOnDevice(
  logits: Float32Array, vocabSize: number, terms: PolicyLossTerms, options: CispoOptions | undefined, grad: boolean, inPlace: boolean,
): CispoResult {
  const N = logits.length / vocabSize, J = terms.node.length;
  return onDevice(({ up, own }) => {
    const z = up(logits, [N, vocabSize]);
    const onDeviceTerms = { node: up(terms.node, [J]), target: up(terms.target, [J]), oldLogprob: up(terms.oldLogprob, [J]), advantage: up(terms.advantage, [J]) };
    // Not in place on the device even though the upload is ours: an in-place call that meets a
    // non-finite logit can name its row and column but not its value (dlogits overwrote it), and the
    // CPU path's message has the value.
    const r = cispoLossDevice(z, onDeviceTerms, { ...options, inPlace: false });
    own(r.logprobs, r.dlogits);
    const result: CispoResult = { loss: r.loss, logprobs: floats(r.logprobs), stats: r.stats };
    if (r.dlogits) {
      const dlogits = floats(r.dlogits);
      if (inPlace) logits.set(dlogits);
      result.dlogits = inPlace ? logits : dlogits;
    }
    return result;
  });
}

export function mergeStatesOnDevice(a: AttentionState, b: AttentionState, h: number, d: number): AttentionState {
  const rows = a.lse.length / h;
  return onDevice(({ up, own }) => {
    const m = mergeStatesDevice({ o: up(a.o, [rows, h, d]), lse: up(a.lse, [rows, h]) }, { o: up(b.o, [rows, h, d]), lse: up(b.lse, [rows, h]) });
    own(m.o, m.lse);
    return { o: floats(m.o), lse: floats(m.lse) };
  });
}

export function mergeStatesCsrOnDevice(states: AttentionState, offsets: Int32Array, h: number, d: number): AttentionState {
  const m = states.lse.length / h;
  return onDevice(({ up, own }) => {
    const merged = mergeStatesCsrDevice({ o: up(states.o, [m, h, d]), lse: up(states.lse, [m, h]) }, offsets);
    own(merged.o, merged.lse);
    return { o: floats(merged.o), lse: floats(merged.lse) };
  });
}

/** The device gather / scatter trust nodeOf (they skip bad entries); the CPU kernels reject them. */
function expectNodeIds(nodeOf: Int32Array, numNodes: number): void {
  for (let i = 0; i < nodeOf.length; i++)
    if (nodeOf[i] < 0 || nodeOf[i] >= numNodes) throw rangeError(`tree.nodeOf[${i}]: node ${nodeOf[i]} out of range [0, ${numNodes})`);
}

export function gatherToSamplesOnDevice(nodeOf: Int32Array, numNodes: number, nodeValues: Float32Array, channels: number): Float32Array {
  expectNodeIds(nodeOf, numNodes);
  return onDevice(({ up, own }) => {
    const out = gatherToSamplesDevice(up(nodeValues, [numNodes, channels]), up(nodeOf, [nodeOf.length]));
    own(out);
    return floats(out);
  });
}

export function scatterFromSamplesOnDevice(nodeOf: Int32Array, numNodes: number, sampleValues: Float32Array, channels: number): Float32Array {
  expectNodeIds(nodeOf, numNodes);
  return onDevice(({ up, own }) => {
    const out = scatterFromSamplesDevice(up(sampleValues, [nodeOf.length, channels]), up(nodeOf, [nodeOf.length]), numNodes);
    own(out);
    return floats(out);
  });
}

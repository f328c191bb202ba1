// Tree attention forward and backward (contract 2). Checks against forge_tree_attention_forward /
// backward on the CPU, with the same dtype-rounded inputs (the backward gets the CPU forward's O,
// rounded to the dtype, and its LSE, on both sides), on irregular forests and agent trees, MHA and
// GQA, D 128 and 64, bf16 / f16 / f32. Timing on a 32k-token agent tree with 16 branches.
// FLOPs are counted on the pairs actually attended (sum over nodes of depth + 1): forward 4*pairs*D
// per query head (QK^T and PV), backward 2.5x that (the usual FlashAttention-2 count: 5 matmuls).
#include "device_fill.hpp"
#include "sections.hpp"
#include "trees.hpp"

namespace gpubench {
namespace {

const char* kSection = "attention";
// Inputs are N(0, 1), so outputs and gradients are of order 1: errors are relative to an RMS of at
// least this (a node that sees only itself has dQ = dK = 0 exactly; a device gets rounding noise).
constexpr double kRmsFloor = 1e-2;

struct Heads {
  int32_t hq, hkv, d;
  float scale;  // 0: 1/sqrt(D)
};

std::string shape_of(const Tree& tree, const Heads& h) {
  return "N=" + std::to_string(tree.num_nodes) + " Hq=" + std::to_string(h.hq) + " Hkv=" + std::to_string(h.hkv) +
         " D=" + std::to_string(h.d);
}

forge_attention_shape attention_shape(const Tree& tree, const Heads& h) {
  forge_attention_shape s{};
  s.num_nodes = tree.num_nodes;
  s.num_heads = h.hq;
  s.num_kv_heads = h.hkv;
  s.head_dim = h.d;
  s.scale = h.scale;
  return s;
}

void check_attention(Context& ctx, const Tree& tree, const Heads& h, forge_dtype dt) {
  const forge_attention_shape shape = attention_shape(tree, h);
  const size_t n = static_cast<size_t>(tree.num_nodes), q_elems = n * h.hq * h.d, kv_elems = n * h.hkv * h.d;
  const std::vector<float> q = random_normal(ctx.rng, q_elems, 1.f, dt), k = random_normal(ctx.rng, kv_elems, 1.f, dt);
  const std::vector<float> v = random_normal(ctx.rng, kv_elems, 1.f, dt), d_o = random_normal(ctx.rng, q_elems, 1.f, dt);
  std::vector<float> o_ref(q_elems), lse_ref(n * h.hq);
  GB_FORGE(forge_tree_attention_forward(&shape, q.data(), k.data(), v.data(), tree.parent.data(),
                                        tree.subtree_end.data(), o_ref.data(), lse_ref.data()));

  cudaStream_t s = ctx.stream.get();
  DeviceBuffer d_q = upload(q, dt, s), d_k = upload(k, dt, s), d_v = upload(v, dt, s);
  DeviceBuffer d_se = upload_raw(tree.subtree_end, s);
  DeviceBuffer d_out(q_elems * forge_dtype_size(dt)), d_lse(n * h.hq * 4);
  poison(d_out, s), poison(d_lse, s);
  GB_FORGE(forge_cuda_tree_attention_forward(&shape, dt, d_q.get(), d_k.get(), d_v.get(), d_se.as<int32_t>(),
                                             d_out.get(), d_lse.as<float>(), ctx.stream.as_void()));
  const std::string name = tree.description.substr(0, tree.description.find(':')) + " " + shape_of(tree, h) +
                           (h.scale > 0 ? " scale=" + std::to_string(h.scale).substr(0, 5) : "");
  const std::vector<float> o_dev = download(d_out, q_elems, dt, s);
  ctx.report.check(kSection, name + " fwd", dt, "o", compare(o_dev, o_ref, kRmsFloor), dtype_bound(dt));
  // The same inputs again must give the same bits: a difference between runs is a race.
  DeviceBuffer d_out2(q_elems * forge_dtype_size(dt));
  poison(d_out2, s);
  GB_FORGE(forge_cuda_tree_attention_forward(&shape, dt, d_q.get(), d_k.get(), d_v.get(), d_se.as<int32_t>(),
                                             d_out2.get(), d_lse.as<float>(), ctx.stream.as_void()));
  ctx.report.check(kSection, name + " fwd rerun", dt, "o bitwise", compare(download(d_out2, q_elems, dt, s), o_dev), 0.0);
  ctx.report.check(kSection, name + " fwd", FORGE_DTYPE_F32, "lse",
                   compare(download(d_lse, lse_ref.size(), FORGE_DTYPE_F32, s), lse_ref), dtype_bound(FORGE_DTYPE_F32));

  // Backward from the same O (as the dtype holds it) and LSE on both sides.
  std::vector<float> o_in = o_ref;
  round_to(o_in, dt);
  std::vector<float> dq_ref(q_elems), dk_ref(kv_elems), dv_ref(kv_elems);
  GB_FORGE(forge_tree_attention_backward(&shape, q.data(), k.data(), v.data(), tree.parent.data(),
                                         tree.subtree_end.data(), o_in.data(), lse_ref.data(), d_o.data(),
                                         dq_ref.data(), dk_ref.data(), dv_ref.data()));
  DeviceBuffer d_o_in = upload(o_in, dt, s), d_lse_in = upload(lse_ref, FORGE_DTYPE_F32, s), d_do = upload(d_o, dt, s);
  const size_t elt = forge_dtype_size(dt);
  DeviceBuffer d_dq(q_elems * elt), d_dk(kv_elems * elt), d_dv(kv_elems * elt);
  poison(d_dq, s), poison(d_dk, s), poison(d_dv, s);
  GB_FORGE(forge_cuda_tree_attention_backward(&shape, dt, d_q.get(), d_k.get(), d_v.get(), d_se.as<int32_t>(),
                                              d_o_in.get(), d_lse_in.as<float>(), d_do.get(), d_dq.get(), d_dk.get(),
                                              d_dv.get(), ctx.stream.as_void()));
  ctx.report.check(kSection, name + " bwd", dt, "dq", compare(download(d_dq, q_elems, dt, s), dq_ref, kRmsFloor), dtype_bound(dt));
  ctx.report.check(kSection, name + " bwd", dt, "dk", compare(download(d_dk, kv_elems, dt, s), dk_ref, kRmsFloor), dtype_bound(dt));
  ctx.report.check(kSection, name + " bwd", dt, "dv", compare(download(d_dv, kv_elems, dt, s), dv_ref, kRmsFloor), dtype_bound(dt));
}

void time_attention(Context& ctx, const Tree& tree, const Heads& h, bool backward, bool target) {
  const forge_dtype dt = FORGE_DTYPE_BF16;
  const forge_attention_shape shape = attention_shape(tree, h);
  const int64_t n = tree.num_nodes, q_elems = n * h.hq * h.d, kv_elems = n * h.hkv * h.d;
  cudaStream_t s = ctx.stream.get();
  DeviceBuffer q(q_elems * 2), k(kv_elems * 2), v(kv_elems * 2), o(q_elems * 2), lse(n * h.hq * 4);
  DeviceBuffer d_se = upload_raw(tree.subtree_end, s);
  fill_normal(dt, q.get(), q_elems, ctx.rng.fork(), 0.f, 1.f, s);
  fill_normal(dt, k.get(), kv_elems, ctx.rng.fork(), 0.f, 1.f, s);
  fill_normal(dt, v.get(), kv_elems, ctx.rng.fork(), 0.f, 1.f, s);
  poison(o, s), poison(lse, s);
  auto forward = [&](int) {
    GB_FORGE(forge_cuda_tree_attention_forward(&shape, dt, q.get(), k.get(), v.get(), d_se.as<int32_t>(), o.get(),
                                               lse.as<float>(), ctx.stream.as_void()));
  };
  const std::string shp = shape_of(tree, h);
  const std::string kind = tree.description.rfind("causal", 0) == 0 ? "causal" : "tree";
  const double fwd_flops = 4.0 * static_cast<double>(tree.attended_pairs) * h.d * h.hq;
  const std::string pairs = "pairs=" + std::to_string(tree.attended_pairs);
  const Timing tf = time_it(ctx, forward);
  check_written(ctx, kSection, kind + " fwd " + shp, dt, "o", o.get(), q_elems);
  check_written(ctx, kSection, kind + " fwd " + shp, FORGE_DTYPE_F32, "lse", lse.get(), n * h.hq);
  record_flops(ctx, kSection, kind + " fwd", shp, dt, tf, fwd_flops, "4*pairs*D*Hq, " + pairs);
  if (target)
    record_target(ctx, "tree attention fwd " + shp, ">= 50% of the measured bf16 GEMM rate (attended pairs)", 0.5);
  if (!backward) return;

  DeviceBuffer d_o(q_elems * 2), dq(q_elems * 2), dk(kv_elems * 2), dv(kv_elems * 2);
  fill_normal(dt, d_o.get(), q_elems, ctx.rng.fork(), 0.f, 1.f, s);
  poison(dq, s), poison(dk, s), poison(dv, s);
  const Timing tb = time_it(ctx, [&](int) {
    GB_FORGE(forge_cuda_tree_attention_backward(&shape, dt, q.get(), k.get(), v.get(), d_se.as<int32_t>(), o.get(),
                                                lse.as<float>(), d_o.get(), dq.get(), dk.get(), dv.get(),
                                                ctx.stream.as_void()));
  });
  check_written(ctx, kSection, kind + " bwd " + shp, dt, "dq", dq.get(), q_elems);
  check_written(ctx, kSection, kind + " bwd " + shp, dt, "dk", dk.get(), kv_elems);
  check_written(ctx, kSection, kind + " bwd " + shp, dt, "dv", dv.get(), kv_elems);
  record_flops(ctx, kSection, kind + " bwd", shp, dt, tb, 2.5 * fwd_flops, "10*pairs*D*Hq (2.5x fwd), " + pairs);
}

void run_checks(Context& ctx) {
  const bool quick = ctx.opt.quick, smoke = ctx.opt.smoke;
  const Tree forks = random_fork_tree(by_mode<int64_t>(ctx.opt, 2000, 1000, 200), ctx.rng);
  ctx.report.note("check tree: " + forks.description + ", N=" + std::to_string(forks.num_nodes) + ", " +
                  std::to_string(forks.leaves) + " leaves, depth " + std::to_string(forks.max_depth));
  const int32_t hq = smoke ? 4 : 8;
  const Heads fork_heads[] = {{hq, hq, 128, 0.f}, {hq, 2, 128, 0.f}, {hq, 2, 64, 0.f}};
  for (const Heads& h : fork_heads)
    for (forge_dtype dt : {FORGE_DTYPE_BF16, FORGE_DTYPE_F16, FORGE_DTYPE_F32}) {
      if (quick && dt == FORGE_DTYPE_F16) continue;
      run_case(ctx, kSection, "check " + shape_of(forks, h) + " " + dtype_name(dt),
               [&] { check_attention(ctx, forks, h, dt); });
    }
  // Tails: a single node, and a chain one past a 64-row tile.
  for (int64_t len : {int64_t{1}, int64_t{65}}) {
    std::vector<int32_t> chain(static_cast<size_t>(len));
    for (int32_t& t : chain) t = static_cast<int32_t>(ctx.rng.below(151936));
    const Tree tail = build_tree({chain}, "chain");
    run_case(ctx, kSection, "check chain N=" + std::to_string(len),
             [&] { check_attention(ctx, tail, {4, 2, 64, 0.f}, FORGE_DTYPE_BF16); });
  }
  const Tree agent = agent_tree(smoke ? AgentTreeSpec{240, 48, 4, 3} : AgentTreeSpec{1200, 256, 16, 3}, ctx.rng);
  run_case(ctx, kSection, "check agent tree bf16", [&] { check_attention(ctx, agent, {4, 1, 64, 0.05f}, FORGE_DTYPE_BF16); });
  run_case(ctx, kSection, "check agent tree f32", [&] { check_attention(ctx, agent, {4, 4, 128, 0.f}, FORGE_DTYPE_F32); });
}

// The timing problems: the 32k agent tree, a 16k D=64 tree and a 32k causal chain; with
// --smoke the same shapes of trees a few hundred tokens long, and fewer heads.
struct TimingSizes {
  AgentTreeSpec big, mid;
  int64_t chain;
  int32_t heads, kv_heads;
};

}  // namespace

void run_attention(Context& ctx) {
  run_checks(ctx);
  // The target problem at full size even with --quick: each run takes milliseconds.
  const TimingSizes z = ctx.opt.smoke ? TimingSizes{{256, 64, 4, 2}, {160, 32, 4, 2}, 128, 4, 2}
                                      : TimingSizes{{32768, 4096, 16, 8}, {16384, 2048, 16, 8}, 32768, 32, 8};
  const std::string big_name = ctx.opt.smoke ? std::to_string(z.big.nodes) + "-token" : "32k";
  Tree big;
  run_case(ctx, kSection, "build " + big_name + " agent tree", [&] {
    big = agent_tree(z.big, ctx.rng);
    ctx.report.note("timing tree: " + big.description + ", N=" + std::to_string(big.num_nodes) + " from " +
                    std::to_string(big.input_tokens) + " input tokens, " + std::to_string(big.attended_pairs) +
                    " attended pairs (dense causal: " + std::to_string(big.num_nodes * (big.num_nodes + 1) / 2) + ")");
  });
  if (big.num_nodes == 0) return;
  run_case(ctx, kSection, "time " + big_name + " MHA",
           [&] { time_attention(ctx, big, {z.heads, z.heads, 128, 0.f}, true, true); });
  run_case(ctx, kSection, "time " + big_name + " GQA",
           [&] { time_attention(ctx, big, {z.heads, z.kv_heads, 128, 0.f}, true, true); });
  if (ctx.opt.quick) return;
  run_case(ctx, kSection, "time " + std::to_string(z.mid.nodes) + "-token D=64", [&] {
    const Tree mid = agent_tree(z.mid, ctx.rng);
    time_attention(ctx, mid, {z.heads, z.kv_heads, 64, 0.f}, true, false);
  });
  run_case(ctx, kSection, "time " + std::to_string(z.chain) + "-token causal chain", [&] {
    // One long sequence: the dense causal problem, for how the rate on the tree compares.
    std::vector<int32_t> chain(static_cast<size_t>(z.chain));
    for (size_t i = 0; i < chain.size(); ++i) chain[i] = static_cast<int32_t>(ctx.rng.below(151936));
    const Tree causal = build_tree({chain}, "causal chain");
    time_attention(ctx, causal, {z.heads, z.kv_heads, 128, 0.f}, false, false);
  });
}

}  // namespace gpubench

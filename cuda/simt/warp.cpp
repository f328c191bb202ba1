// Warp-level operations: the exchange every collective is built on, shuffles and ballots, and the
// tensor-core operations with the fragment layouts of the PTX ISA:
//
// ldmatrix .m8n8 .x4 .b16: lanes 8i..8i+7 give the addresses of rows 0..7 of matrix i (16-byte
//   aligned); register i of lane l = 4g + t receives matrix i's (row g, cols 2t, 2t+1); with .trans it
//   receives (rows 2t, 2t+1, col g). The lower-indexed element sits in the low 16 bits.
// mma .m16n8k16 .row.col, f32 accumulators: with g = l / 4, t = l % 4,
//   A (16x16): a[0] = A[g][2t, 2t+1], a[1] = A[g+8][2t, 2t+1], a[2] = A[g][2t+8, +9], a[3] = A[g+8][2t+8, +9]
//   B (16x8):  b0 = B[2t, 2t+1][g], b1 = B[2t+8, 2t+9][g]
//   C (16x8):  c[0], c[1] = C[g][2t, 2t+1], c[2], c[3] = C[g+8][2t, 2t+1]
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "state.hpp"

namespace forge::simt {

using detail::kWarpSize;

unsigned lane_id() { return detail::state().current->lane; }

const unsigned char* warp_exchange(const char* op, unsigned mask, const void* mine, size_t bytes) {
  detail::LaunchState& st = detail::state();
  detail::Thread& t = *st.current;
  detail::Warp& w = st.current_block.warps[t.warp];
  const unsigned full = w.lanes == kWarpSize ? 0xffffffffu : ((1u << w.lanes) - 1);
  if (mask != full) {
    char hex[16];
    std::snprintf(hex, sizeof hex, "%08x", mask);
    detail::fail(std::string(op) + " with mask 0x" + hex + ": the emulator runs warp operations over the whole warp only");
  }
  if (w.exited > 0)
    detail::fail(std::string(op) + " over the whole warp after " + std::to_string(w.exited) +
                 " of its lanes exited (undefined on a GPU)");
  const uint64_t generation = w.generation;
  if (w.arrived == 0) {
    w.op = op;
  } else if (w.op != op && std::strcmp(w.op, op) != 0) {
    detail::fail(std::string("lanes of one warp in different warp operations: ") + w.op + " and " + op +
                 " (divergent code)");
  }
  unsigned char* slots = w.slots[generation & 1];
  std::memcpy(slots + t.lane * kSlotBytes, mine, bytes);
  ++w.arrived;
  ++st.progress;
  if (w.arrived == w.lanes) {
    w.arrived = 0;
    ++w.generation;
  } else {
    detail::wait_until(op, [&] { return w.generation != generation; });
  }
  return slots;
}

unsigned ballot(unsigned mask, int predicate) {
  const int mine = predicate != 0;
  const unsigned char* all = warp_exchange("__ballot_sync", mask, &mine, sizeof mine);
  unsigned bits = 0;
  for (unsigned lane = 0; lane < kWarpSize; ++lane) {
    if (!(mask >> lane & 1u)) continue;
    int p;
    std::memcpy(&p, all + lane * kSlotBytes, sizeof p);
    if (p) bits |= 1u << lane;
  }
  return bits;
}

void syncwarp(unsigned mask) { warp_exchange("__syncwarp", mask, nullptr, 0); }

namespace {

uint16_t load_b16(const unsigned char* row, unsigned column) {
  uint16_t v;
  std::memcpy(&v, row + 2 * column, sizeof v);
  return v;
}

uint32_t pack(uint16_t lo, uint16_t hi) { return uint32_t{lo} | uint32_t{hi} << 16; }

float widen(uint16_t bits, bool bf16) {
  if (bf16) {
    const uint32_t w = uint32_t{bits} << 16;
    float f;
    std::memcpy(&f, &w, sizeof f);
    return f;
  }
  __half_raw raw;
  raw.x = bits;
  return __half2float(__half(raw));
}

}  // namespace

void ldmatrix_x4(uint32_t (&r)[4], const void* row_address, bool transpose) {
  const char* op = transpose ? "ldmatrix.x4.trans" : "ldmatrix.x4";
  if (reinterpret_cast<uintptr_t>(row_address) % 16 != 0)
    detail::fail(std::string(op) + ": row address not 16-byte aligned");
  const unsigned char* all = warp_exchange(op, 0xffffffffu, &row_address, sizeof row_address);
  auto row = [&](unsigned lane) {
    const unsigned char* p;
    std::memcpy(&p, all + lane * kSlotBytes, sizeof p);
    return p;
  };
  const unsigned lane = lane_id(), g = lane / 4, t = lane % 4;
  for (unsigned i = 0; i < 4; ++i) {
    if (!transpose) {
      const unsigned char* p = row(8 * i + g);
      r[i] = pack(load_b16(p, 2 * t), load_b16(p, 2 * t + 1));
    } else {
      r[i] = pack(load_b16(row(8 * i + 2 * t), g), load_b16(row(8 * i + 2 * t + 1), g));
    }
  }
}

void mma_m16n8k16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1, bool bf16) {
  struct Fragments {
    uint32_t a[4], b[2];
  } mine{{a[0], a[1], a[2], a[3]}, {b0, b1}};
  const unsigned char* all = warp_exchange(bf16 ? "mma.m16n8k16.bf16" : "mma.m16n8k16.f16", 0xffffffffu, &mine,
                                           sizeof mine);
  float A[16][16], B[16][8];
  for (unsigned lane = 0; lane < kWarpSize; ++lane) {
    Fragments f;
    std::memcpy(&f, all + lane * kSlotBytes, sizeof f);
    const unsigned g = lane / 4, t = lane % 4;
    for (unsigned e = 0; e < 2; ++e) {
      const unsigned shift = 16 * e;
      A[g][2 * t + e] = widen(static_cast<uint16_t>(f.a[0] >> shift), bf16);
      A[g + 8][2 * t + e] = widen(static_cast<uint16_t>(f.a[1] >> shift), bf16);
      A[g][2 * t + 8 + e] = widen(static_cast<uint16_t>(f.a[2] >> shift), bf16);
      A[g + 8][2 * t + 8 + e] = widen(static_cast<uint16_t>(f.a[3] >> shift), bf16);
      B[2 * t + e][g] = widen(static_cast<uint16_t>(f.b[0] >> shift), bf16);
      B[2 * t + 8 + e][g] = widen(static_cast<uint16_t>(f.b[1] >> shift), bf16);
    }
  }
  const unsigned lane = lane_id(), g = lane / 4, t = lane % 4;
  for (unsigned i = 0; i < 4; ++i) {
    const unsigned row = g + 8 * (i / 2), col = 2 * t + i % 2;
    double sum = c[i];  // 16-bit products are exact in float; the sum is rounded once
    for (unsigned k = 0; k < 16; ++k) sum += static_cast<double>(A[row][k]) * B[k][col];
    c[i] = static_cast<float>(sum);
  }
}

// cp.async: queued per thread and carried out at cp.async.wait_group, or at once when the launch's
// schedule says eager (scheduler.cpp).
void cp_async_16(void* dst, const void* src, bool valid) {
  if (reinterpret_cast<uintptr_t>(dst) % 16 != 0 || (valid && reinterpret_cast<uintptr_t>(src) % 16 != 0))
    detail::fail("cp.async 16: address not 16-byte aligned");
  detail::LaunchState& st = detail::state();
  if (st.eager_copies) {
    if (valid) std::memcpy(dst, src, 16);
    else std::memset(dst, 0, 16);
    return;
  }
  st.current->uncommitted.push_back({dst, src, valid});
}

void cp_async_commit() {
  detail::Thread& t = *detail::state().current;
  t.committed.push_back(std::move(t.uncommitted));
  t.uncommitted.clear();
}

void cp_async_wait(int pending_groups) {
  detail::Thread& t = *detail::state().current;
  while (t.committed.size() > static_cast<size_t>(pending_groups)) {
    for (const detail::PendingCopy& c : t.committed.front()) {
      if (c.valid) std::memcpy(c.dst, c.src, 16);
      else std::memset(c.dst, 0, 16);
    }
    t.committed.pop_front();
  }
}

}  // namespace forge::simt

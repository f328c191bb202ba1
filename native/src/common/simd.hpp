// FORGE_HOT marks a kernel's hot loop function: in the portable x86-64 build GCC compiles it for
// AVX-512, AVX2 and the baseline and picks one when the library loads (target_clones), so one binary
// runs everywhere and still uses the wide units. Mark outer loop functions, not tiny helpers: clones
// are not inlined into their callers.
#pragma once

#if defined(FORGE_TARGET_CLONES) && defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define FORGE_HOT __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FORGE_HOT
#endif

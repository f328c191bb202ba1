// The part of the CUDA runtime API that cuda/ calls, for the emulator: one device ("forge-simt", a
// CPU, not a GPU, presented as compute capability 8.0), memory that is host memory underneath but
// tracked as device memory (so the C ABI's pointer checks behave as on a GPU), one stream that runs
// work at the call (created streams are handles onto it), events that read the host clock, and errors
// per host thread as the real runtime keeps them.
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <string>

#include "runtime_state.hpp"

// The opaque handle types of the runtime API. A created stream is a name for the one stream
// underneath; an event holds the host time at which it was recorded (work runs at the call, so that is
// when everything before it on the stream finished).
struct CUstream_st {
  unsigned flags;
};
struct CUmemPoolHandle_st {};
struct CUevent_st {
  std::chrono::steady_clock::time_point at;
  bool recorded = false;
};

namespace forge::simt::detail {
namespace {

constexpr size_t kDefaultDynamicShared = 48 * 1024;
constexpr size_t kOptInDynamicShared = 166912;  // an sm_80 block's opt-in limit
constexpr int kMultiprocessors = 4;
constexpr int kL2CacheBytes = 40 * 1024 * 1024;  // nominal (an sm_80 part's); the emulator has no cache

struct Allocation {
  size_t bytes;
  void* mapping;
  size_t mapping_bytes;
};

std::mutex memory_mutex;
std::map<uintptr_t, Allocation> allocations;  // by start address
std::map<const void*, size_t> shared_limits;  // cudaFuncSetAttribute opt-ins
std::set<const CUstream_st*> streams;          // created and not yet destroyed
std::set<const CUevent_st*> events;

thread_local cudaError_t last_error = cudaSuccess;
thread_local std::string last_detail;
thread_local cudaError_t detail_code = cudaSuccess;
thread_local int current_device = 0;

size_t page_size() { return static_cast<size_t>(sysconf(_SC_PAGESIZE)); }

// The allocation holding `p`, or nullptr.
const Allocation* find(const void* p, uintptr_t* start) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  auto it = allocations.upper_bound(a);
  if (it == allocations.begin()) return nullptr;
  --it;
  if (a >= it->first + std::max<size_t>(it->second.bytes, 1)) return nullptr;
  if (start) *start = it->first;
  return &it->second;
}

// Device memory ends 16-byte aligned right at a PROT_NONE page, so reading or writing past the end
// faults; it starts filled with 0xFF bytes (NaN in every float format).
cudaError_t allocate(void** ptr, size_t bytes) {
  if (ptr == nullptr) return cudaErrorInvalidValue;
  const size_t page = page_size();
  const size_t rounded = (std::max<size_t>(bytes, 1) + 15) / 16 * 16;
  const size_t data_pages = (rounded + page - 1) / page * page;
  void* mapping = mmap(nullptr, data_pages + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mapping == MAP_FAILED) return cudaErrorMemoryAllocation;
  unsigned char* base = static_cast<unsigned char*>(mapping);
  mprotect(base + data_pages, page, PROT_NONE);
  unsigned char* data = base + data_pages - rounded;
  std::memset(data, 0xFF, rounded);
  std::lock_guard<std::mutex> lock(memory_mutex);
  allocations[reinterpret_cast<uintptr_t>(data)] = Allocation{bytes, mapping, data_pages + page};
  *ptr = data;
  return cudaSuccess;
}

cudaError_t release(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  std::lock_guard<std::mutex> lock(memory_mutex);
  auto it = allocations.find(reinterpret_cast<uintptr_t>(ptr));
  if (it == allocations.end()) return cudaErrorInvalidValue;
  munmap(it->second.mapping, it->second.mapping_bytes);
  allocations.erase(it);
  return cudaSuccess;
}

cudaError_t record(cudaError_t e) {
  if (e != cudaSuccess) last_error = e;
  return e;
}

// The null (legacy) stream, the per-thread and legacy handles, or a stream created and not destroyed.
bool known_stream(cudaStream_t s) {
  if (s == nullptr || s == cudaStreamLegacy || s == cudaStreamPerThread) return true;
  std::lock_guard<std::mutex> lock(memory_mutex);
  return streams.count(s) != 0;
}

// Creation and destruction of the opaque handles (streams, events), tracked so a stale one is refused.
template <class Handle>
cudaError_t create_handle(std::set<const Handle*>& live, Handle** out, Handle* made) {
  std::lock_guard<std::mutex> lock(memory_mutex);
  live.insert(made);
  *out = made;
  return cudaSuccess;
}
template <class Handle>
cudaError_t destroy_handle(std::set<const Handle*>& live, Handle* handle) {
  std::lock_guard<std::mutex> lock(memory_mutex);
  if (handle == nullptr || live.erase(handle) == 0) return record(cudaErrorInvalidResourceHandle);
  delete handle;
  return cudaSuccess;
}

bool known_event(cudaEvent_t e) {
  std::lock_guard<std::mutex> lock(memory_mutex);
  return e != nullptr && events.count(e) != 0;
}

}  // namespace

void set_error(cudaError_t code, const std::string& detail) {
  last_error = code;
  detail_code = code;
  last_detail = detail;
}

size_t dynamic_shared_limit(const void* kernel) {
  std::lock_guard<std::mutex> lock(memory_mutex);
  auto it = shared_limits.find(kernel);
  return it == shared_limits.end() ? kDefaultDynamicShared : it->second;
}

std::string describe_fault(uintptr_t address) {
  std::lock_guard<std::mutex> lock(memory_mutex);
  for (const auto& [start, a] : allocations) {
    const uintptr_t end = start + a.bytes;
    const uintptr_t mapping_end = reinterpret_cast<uintptr_t>(a.mapping) + a.mapping_bytes;
    if (address >= end && address < mapping_end)
      return "invalid memory access: " + std::to_string(address - end) + " bytes past the end of a device allocation of " +
             std::to_string(a.bytes) + " bytes";
  }
  return "invalid memory access at address 0x" + [&] {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%llx", static_cast<unsigned long long>(address));
    return std::string(buf);
  }();
}

}  // namespace forge::simt::detail

using namespace forge::simt::detail;

extern "C" {

cudaError_t cudaGetDeviceCount(int* count) {
  if (!count) return record(cudaErrorInvalidValue);
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  if (!device) return record(cudaErrorInvalidValue);
  *device = current_device;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : record(cudaErrorInvalidDevice); }

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (!prop) return record(cudaErrorInvalidValue);
  if (device != 0) return record(cudaErrorInvalidDevice);
  std::memset(prop, 0, sizeof *prop);
  std::strncpy(prop->name, "forge-simt CPU emulator (not a GPU)", sizeof prop->name - 1);
  prop->major = 8;
  prop->minor = 0;
  prop->multiProcessorCount = kMultiprocessors;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = 1024;
  prop->sharedMemPerBlock = kDefaultDynamicShared;
  prop->sharedMemPerBlockOptin = kOptInDynamicShared;
  prop->totalGlobalMem = static_cast<size_t>(sysconf(_SC_PHYS_PAGES)) * page_size();
  prop->l2CacheSize = kL2CacheBytes;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (!value || device != 0) return record(cudaErrorInvalidValue);
  switch (attr) {
    case cudaDevAttrMultiProcessorCount: *value = kMultiprocessors; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = static_cast<int>(kOptInDynamicShared); return cudaSuccess;
    case cudaDevAttrWarpSize: *value = 32; return cudaSuccess;
    case cudaDevAttrL2CacheSize: *value = kL2CacheBytes; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMajor: *value = 8; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMinor: *value = 0; return cudaSuccess;
    default: return record(cudaErrorInvalidValue);
  }
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  if (!free_bytes || !total_bytes) return record(cudaErrorInvalidValue);
  *total_bytes = static_cast<size_t>(sysconf(_SC_PHYS_PAGES)) * page_size();
  *free_bytes = static_cast<size_t>(sysconf(_SC_AVPHYS_PAGES)) * page_size();
  return cudaSuccess;
}

cudaError_t cudaMalloc(void** ptr, size_t bytes) { return record(allocate(ptr, bytes)); }
cudaError_t cudaFree(void* ptr) { return record(release(ptr)); }
cudaError_t cudaMallocAsync(void** ptr, size_t bytes, cudaStream_t) { return record(allocate(ptr, bytes)); }

// Memory pools: a handle per created pool; allocations from one are ordinary emulated device memory.
cudaError_t cudaMemPoolCreate(cudaMemPool_t* pool, const cudaMemPoolProps* props) {
  if (!pool || !props || props->location.type != cudaMemLocationTypeDevice || props->location.id != 0)
    return record(cudaErrorInvalidValue);
  *pool = new CUmemPoolHandle_st{};
  return cudaSuccess;
}
cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, cudaMemPoolAttr, void* value) {
  return pool && value ? cudaSuccess : record(cudaErrorInvalidValue);
}
cudaError_t cudaMallocFromPoolAsync(void** ptr, size_t bytes, cudaMemPool_t pool, cudaStream_t) {
  return pool ? record(allocate(ptr, bytes)) : record(cudaErrorInvalidValue);
}
cudaError_t cudaFreeAsync(void* ptr, cudaStream_t) { return record(release(ptr)); }

cudaError_t cudaMemcpy(void* dst, const void* src, size_t count, cudaMemcpyKind) {
  if (count && (!dst || !src)) return record(cudaErrorInvalidValue);
  if (count) std::memmove(dst, src, count);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count, cudaMemcpyKind kind, cudaStream_t) {
  return cudaMemcpy(dst, src, count, kind);
}
cudaError_t cudaMemset(void* ptr, int value, size_t count) {
  if (count && !ptr) return record(cudaErrorInvalidValue);
  if (count) std::memset(ptr, value, count);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* ptr, int value, size_t count, cudaStream_t) { return cudaMemset(ptr, value, count); }

cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags) {
  if (!stream || (flags & ~static_cast<unsigned>(cudaStreamNonBlocking))) return record(cudaErrorInvalidValue);
  return create_handle(streams, stream, new CUstream_st{flags});
}
cudaError_t cudaStreamCreate(cudaStream_t* stream) { return cudaStreamCreateWithFlags(stream, cudaStreamDefault); }
cudaError_t cudaStreamDestroy(cudaStream_t stream) { return destroy_handle(streams, stream); }
cudaError_t cudaStreamQuery(cudaStream_t stream) {
  return known_stream(stream) ? cudaSuccess : record(cudaErrorInvalidResourceHandle);
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int) {
  if (!event) return record(cudaErrorInvalidValue);
  return create_handle(events, event, new CUevent_st{});
}
cudaError_t cudaEventCreate(cudaEvent_t* event) { return cudaEventCreateWithFlags(event, cudaEventDefault); }
cudaError_t cudaEventDestroy(cudaEvent_t event) { return destroy_handle(events, event); }
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  if (!known_event(event) || !known_stream(stream)) return record(cudaErrorInvalidResourceHandle);
  event->at = std::chrono::steady_clock::now();
  event->recorded = true;
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  return known_event(event) ? cudaSuccess : record(cudaErrorInvalidResourceHandle);
}
cudaError_t cudaEventQuery(cudaEvent_t event) {
  return known_event(event) ? cudaSuccess : record(cudaErrorInvalidResourceHandle);
}
// Host time between the two recordings: what the emulator took, which says nothing about a GPU.
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (!ms) return record(cudaErrorInvalidValue);
  if (!known_event(start) || !known_event(end) || !start->recorded || !end->recorded)
    return record(cudaErrorInvalidResourceHandle);
  *ms = std::chrono::duration<float, std::milli>(end->at - start->at).count();
  return cudaSuccess;
}

cudaError_t cudaGetLastError(void) {
  const cudaError_t e = last_error;
  last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError(void) { return last_error; }

const char* cudaGetErrorName(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    default: return "cudaErrorUnknown";
  }
}
const char* cudaGetErrorString(cudaError_t error) {
  if (error == detail_code && !last_detail.empty()) return last_detail.c_str();
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    default: return "emulator error";
  }
}

cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* attributes, const void* ptr) {
  if (!attributes) return record(cudaErrorInvalidValue);
  std::memset(attributes, 0, sizeof *attributes);
  std::lock_guard<std::mutex> lock(memory_mutex);
  if (ptr != nullptr && find(ptr, nullptr)) {
    attributes->type = cudaMemoryTypeDevice;
    attributes->device = 0;
    attributes->devicePointer = const_cast<void*>(ptr);
  } else {
    attributes->type = cudaMemoryTypeUnregistered;
    attributes->device = -2;
  }
  return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 ||
      static_cast<size_t>(value) > kOptInDynamicShared)
    return record(cudaErrorInvalidValue);
  std::lock_guard<std::mutex> lock(memory_mutex);
  shared_limits[func] = static_cast<size_t>(value);
  return cudaSuccess;
}

cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* num_blocks, const void*, int block_size, size_t) {
  if (!num_blocks || block_size <= 0) return record(cudaErrorInvalidValue);
  *num_blocks = std::max(1, 1024 / block_size);
  return cudaSuccess;
}

}  // extern "C"

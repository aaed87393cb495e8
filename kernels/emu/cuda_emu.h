// CUDA-on-CPU emulator: the subset of the CUDA device language that kernels/*.cu use, for g++ -x c++ -DVWLMM_EMU.
// Each CUDA thread runs as a fiber (own stack, hand-written context switch, see emu_runtime.cpp); the blocks of a launch
// run one at a time per worker OS thread. Differences from a GPU are chosen to expose bugs, not hide them: dynamic
// shared memory starts as NaN, reading a shuffle lane that did not take part (outside the mask, exited, or beyond a
// partial last warp) gives NaN, and a block whose live threads all wait without progress fails as a deadlock.
// Not supported by design: inline PTX, mma/wmma, cp.async, TMA, grid-wide sync.
#pragma once
#ifndef VWLMM_EMU
#error "cuda_emu.h is the CPU emulation of CUDA: compile with -DVWLMM_EMU"
#endif

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <type_traits>
#include <utility>

// ---- declaration specifiers ----
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __constant__
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
// Every fiber of a block runs on the same worker OS thread, one block at a time, so a worker's thread-local copy is
// exactly the block's shared memory.
#define __shared__ static thread_local

// ---- vector types ----
struct uint3 { unsigned x, y, z; };
struct dim3
{
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};
struct __align__(8) float2 { float x, y; };
struct __align__(16) float4 { float x, y, z, w; };
struct __align__(8) int2 { int x, y; };
struct __align__(16) int4 { int x, y, z, w; };
struct __align__(16) uint4 { unsigned x, y, z, w; };
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline int2 make_int2(int x, int y) { return {x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
inline uint3 make_uint3(unsigned x, unsigned y, unsigned z) { return {x, y, z}; }

// ---- the runtime's side (emu_runtime.cpp) ----
namespace emu
{
// What a fiber exposes to kernel code; the runtime's fiber record starts with it.
struct ThreadContext
{
    uint3 thread_idx;
    uint3 block_idx;
    dim3 block_dim;
    dim3 grid_dim;
};
extern thread_local ThreadContext* current;

enum class WarpOp { Shuffle, Ballot, Sync };

int syncthreads(int predicate, int mode);  // mode: 0 plain, 1 count, 2 and, 3 or
// Joins this lane's rendezvous for `mask`; deposits `value`; returns the value deposited by lane `src`
// (all-ones poison when src did not take part) or, for Ballot, the ballot of the deposited predicates.
uint64_t warp_exchange(WarpOp op, unsigned mask, uint64_t value, int src);
void* dynamic_shared();
[[noreturn]] void trap(const char* what);

using Invoke = void (*)(void** params);
struct Registration
{
    // signature: one letter per parameter (see param_kind), so tests can check what launchers pack.
    Registration(const char* name, Invoke invoke, int parameterCount, const char* signature);
};

// A parameter's C type as one letter: p pointer, i 32-bit integer, l 64-bit integer, f float, d double, ? other.
// PTX cannot tell p from l (both .u64); this can.
template <class T> constexpr char param_kind()
{
    using U = std::remove_cv_t<std::remove_reference_t<T>>;
    return std::is_pointer<U>::value           ? 'p'
           : std::is_floating_point<U>::value ? (sizeof(U) == 4 ? 'f' : sizeof(U) == 8 ? 'd' : '?')
           : std::is_integral<U>::value       ? (sizeof(U) == 4 ? 'i' : sizeof(U) == 8 ? 'l' : '?')
                                              : '?';
}

// Unpacks cuLaunchKernel-style arguments (an array of pointers to each value) with the kernel's own parameter types.
template <class F> struct Invoker;
template <class... A> struct Invoker<void (*)(A...)>
{
    template <void (*K)(A...), size_t... I> static void unpack(void** p, std::index_sequence<I...>)
    {
        K(*static_cast<std::remove_cv_t<std::remove_reference_t<A>>*>(p[I])...);
    }
    template <void (*K)(A...)> static void call(void** p) { unpack<K>(p, std::index_sequence_for<A...>{}); }
    static constexpr int count = sizeof...(A);
    static constexpr char signature[sizeof...(A) + 1] = {param_kind<A>()..., '\0'};
};

inline unsigned lane()
{
    const ThreadContext& c = *current;
    return (c.thread_idx.x + c.block_dim.x * (c.thread_idx.y + c.block_dim.y * c.thread_idx.z)) & 31u;
}

template <class T> uint64_t to_bits(T v)
{
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffles move up to 8 bytes");
    uint64_t b = 0;
    memcpy(&b, &v, sizeof(T));
    return b;
}
template <class T> T from_bits(uint64_t b)
{
    T v;
    memcpy(&v, &b, sizeof(T));
    return v;
}
// Source lane of a shuffle within its width-segment, or -1 when the lane keeps its own value.
inline int shuffle_source(int lane, int target, int width)
{
    int base = lane & ~(width - 1);
    return target >= base && target < base + width ? target : -1;
}
template <class T> T shuffle(unsigned mask, T var, int target, int width)
{
    int lane_ = (int)lane();
    int src = shuffle_source(lane_, target, width);
    uint64_t got = warp_exchange(WarpOp::Shuffle, mask, to_bits(var), src < 0 ? lane_ : src);
    return from_bits<T>(got);
}
}  // namespace emu

// Kernel registration: one VWLMM_KERNEL(name) line per extern "C" __global__ kernel, at the end of its .cu file.
#define VWLMM_KERNEL(name) \
    static ::emu::Registration vwlmm_registration_##name(#name, &::emu::Invoker<decltype(&name)>::call<&name>, \
                                                         ::emu::Invoker<decltype(&name)>::count, \
                                                         ::emu::Invoker<decltype(&name)>::signature);

#define threadIdx (::emu::current->thread_idx)
#define blockIdx (::emu::current->block_idx)
#define blockDim (::emu::current->block_dim)
#define gridDim (::emu::current->grid_dim)
constexpr int warpSize = 32;

// ---- dynamic shared memory: EXTERN_SHARED(float, buf) declares `float* buf` ----
#define EXTERN_SHARED(T, name) T* name = static_cast<T*>(::emu::dynamic_shared())

// ---- synchronisation ----
inline void __syncthreads() { ::emu::syncthreads(1, 0); }
inline int __syncthreads_count(int p) { return ::emu::syncthreads(p, 1); }
inline int __syncthreads_and(int p) { return ::emu::syncthreads(p, 2); }
inline int __syncthreads_or(int p) { return ::emu::syncthreads(p, 3); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { ::emu::warp_exchange(::emu::WarpOp::Sync, mask, 0, 0); }
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_signal_fence(__ATOMIC_SEQ_CST); }
inline void __trap() { ::emu::trap("__trap() called"); }

// ---- warp shuffles and votes ----
template <class T> T __shfl_sync(unsigned mask, T var, int srcLane, int width = warpSize)
{
    int lane = (int)::emu::lane();
    return ::emu::shuffle(mask, var, (lane & ~(width - 1)) + (srcLane & (width - 1)), width);
}
template <class T> T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = warpSize)
{
    return ::emu::shuffle(mask, var, (int)::emu::lane() ^ laneMask, width);
}
template <class T> T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize)
{
    return ::emu::shuffle(mask, var, (int)::emu::lane() + (int)delta, width);
}
template <class T> T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize)
{
    return ::emu::shuffle(mask, var, (int)::emu::lane() - (int)delta, width);
}
inline unsigned __ballot_sync(unsigned mask, int predicate)
{
    return (unsigned)::emu::warp_exchange(::emu::WarpOp::Ballot, mask, predicate != 0, 0);
}
inline int __any_sync(unsigned mask, int predicate) { return __ballot_sync(mask, predicate) != 0; }
inline int __all_sync(unsigned mask, int predicate) { return __ballot_sync(mask, predicate) == mask; }

// ---- atomics: real atomics, since the blocks of a launch run on several OS threads ----
template <class T> T emu_atomic_add(T* p, T v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
inline int atomicAdd(int* p, int v) { return emu_atomic_add(p, v); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return emu_atomic_add(p, v); }
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) { return emu_atomic_add(p, v); }
template <class F, class U, class Op> F emu_atomic_float(F* p, Op op)
{
    U* u = reinterpret_cast<U*>(p);
    U old = __atomic_load_n(u, __ATOMIC_RELAXED), next;
    do
    {
        F value = op(::emu::from_bits<F>(old));
        next = (U)::emu::to_bits(value);
    } while (!__atomic_compare_exchange_n(u, &old, next, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    return ::emu::from_bits<F>(old);
}
inline float atomicAdd(float* p, float v) { return emu_atomic_float<float, uint32_t>(p, [v](float a) { return a + v; }); }
inline double atomicAdd(double* p, double v) { return emu_atomic_float<double, uint64_t>(p, [v](double a) { return a + v; }); }
template <class T> T emu_atomic_max(T* p, T v)
{
    T old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (old < v && !__atomic_compare_exchange_n(p, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
    return old;
}
template <class T> T emu_atomic_min(T* p, T v)
{
    T old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (old > v && !__atomic_compare_exchange_n(p, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
    return old;
}
inline int atomicMax(int* p, int v) { return emu_atomic_max(p, v); }
inline unsigned atomicMax(unsigned* p, unsigned v) { return emu_atomic_max(p, v); }
inline int atomicMin(int* p, int v) { return emu_atomic_min(p, v); }
inline unsigned atomicMin(unsigned* p, unsigned v) { return emu_atomic_min(p, v); }
template <class T> T emu_atomic_cas(T* p, T expected, T desired)
{
    __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    return expected;
}
inline int atomicCAS(int* p, int c, int v) { return emu_atomic_cas(p, c, v); }
inline unsigned atomicCAS(unsigned* p, unsigned c, unsigned v) { return emu_atomic_cas(p, c, v); }
inline unsigned long long atomicCAS(unsigned long long* p, unsigned long long c, unsigned long long v) { return emu_atomic_cas(p, c, v); }
inline int atomicExch(int* p, int v) { return __atomic_exchange_n(p, v, __ATOMIC_RELAXED); }
inline unsigned atomicExch(unsigned* p, unsigned v) { return __atomic_exchange_n(p, v, __ATOMIC_RELAXED); }
inline unsigned long long atomicExch(unsigned long long* p, unsigned long long v) { return __atomic_exchange_n(p, v, __ATOMIC_RELAXED); }
inline float atomicExch(float* p, float v)
{
    return ::emu::from_bits<float>(__atomic_exchange_n(reinterpret_cast<uint32_t*>(p), (uint32_t)::emu::to_bits(v), __ATOMIC_RELAXED));
}

// ---- math and bit intrinsics (libm for the accurate forms; fast forms map to the same, the GPU's differ slightly) ----
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __saturatef(float x) { return fminf(fmaxf(x, 0.0f), 1.0f); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __float_as_int(float x) { return ::emu::from_bits<int>(::emu::to_bits(x)); }
inline unsigned __float_as_uint(float x) { return ::emu::from_bits<unsigned>(::emu::to_bits(x)); }
inline float __int_as_float(int x) { return ::emu::from_bits<float>(::emu::to_bits(x)); }
inline float __uint_as_float(unsigned x) { return ::emu::from_bits<float>(::emu::to_bits(x)); }
template <class T> T __ldg(const T* p) { return *p; }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }

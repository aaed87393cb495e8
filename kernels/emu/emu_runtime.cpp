// The emulator's runtime: kernel registry, launch validation, worker threads, fibers and their scheduler, barriers and
// warp rendezvous, and the C ABI (shaped like the driver API) that VwLmm.Cuda's EmulatedRuntime calls.
//
// Scheduling: a worker runs one block at a time. Its scheduler loop switches into each runnable fiber in thread order;
// a fiber runs until it waits (barrier, warp rendezvous) or exits, then switches back. A fiber waiting at a barrier is
// runnable once the barrier's generation moved on; one waiting in a rendezvous once every lane of its mask arrived.
// A full pass over the block's fibers in which none was runnable is a deadlock.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "cuda_emu.h"

#define EMU_API extern "C" __attribute__((visibility("default")))

// void vwlmm_emu_switch(void** save_sp, void* load_sp): saves the callee-saved registers on the current stack, stores
// the stack pointer to *save_sp, and resumes the context whose stack pointer is load_sp. A fresh fiber's stack holds
// the entry function in r13, its argument in r12 and vwlmm_emu_trampoline as the return address.
asm(R"(
    .text
    .globl vwlmm_emu_switch
    .hidden vwlmm_emu_switch
    .type vwlmm_emu_switch, @function
vwlmm_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size vwlmm_emu_switch, .-vwlmm_emu_switch

    .globl vwlmm_emu_trampoline
    .hidden vwlmm_emu_trampoline
    .type vwlmm_emu_trampoline, @function
vwlmm_emu_trampoline:
    movq %r12, %rdi
    callq *%r13
    ud2
    .size vwlmm_emu_trampoline, .-vwlmm_emu_trampoline
)");
extern "C" void vwlmm_emu_switch(void** save_sp, void* load_sp);
extern "C" void vwlmm_emu_trampoline();

namespace emu
{
thread_local ThreadContext* current;

namespace
{
// CUresult values the driver returns for the same conditions.
constexpr int kSuccess = 0, kInvalidValue = 1, kInvalidHandle = 400, kNotFound = 500, kLaunchFailed = 719;
constexpr unsigned kMaxThreads = 1024, kMaxSharedBytes = 227 * 1024;
constexpr size_t kStackBytes = 64 * 1024;
constexpr int kPendingPerWarp = 8;
constexpr uint64_t kPoison = ~0ull;

struct Kernel
{
    std::string name;
    Invoke invoke;
    int parameterCount;
    const char* signature;
};

std::map<std::string, Kernel>& registry()
{
    static std::map<std::string, Kernel> kernels;
    return kernels;
}

thread_local std::string lastError;

int fail(int code, std::string message)
{
    lastError = std::move(message);
    return code;
}

enum class State { Ready, AtBarrier, InWarp, Done };

struct Rendezvous
{
    bool active, complete;
    unsigned mask, arrived, consumed;
    WarpOp op;
    uint64_t values[32];
};

struct Fiber
{
    ThreadContext ctx;  // first member: `current` points here
    void* sp;
    State state;
    unsigned linear;
    uint64_t waitGeneration;
    Rendezvous* waitRendezvous;
};

struct Launch
{
    const Kernel* kernel;
    dim3 grid, block;
    unsigned sharedBytes;
    void** params;
    uint64_t blockCount;
    std::atomic<uint64_t> nextBlock{0};
    std::atomic<bool> failed{false};
    std::mutex errorLock;
    std::string error;

    void setError(std::string message)
    {
        std::lock_guard<std::mutex> lock(errorLock);
        if (!failed.exchange(true)) error = std::move(message);
    }
};

std::string describe(const uint3& v) { return "(" + std::to_string(v.x) + "," + std::to_string(v.y) + "," + std::to_string(v.z) + ")"; }

// One OS thread running blocks. Owns its fiber stacks (mapped once, reused by every block) and the block state.
class Worker
{
  public:
    static thread_local Worker* self;  // the worker running on this OS thread

    Worker()
    {
        mapStacks();
        thread_ = std::thread([this] { loop(); });
    }

    ~Worker()
    {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stop_ = true;
        }
        wake_.notify_one();
        thread_.join();
        if (stacks_) munmap(stacks_, stackRegionBytes());
    }

    void start(Launch* launch)
    {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            launch_ = launch;
        }
        wake_.notify_one();
    }

    void wait()
    {
        std::unique_lock<std::mutex> lock(mutex_);
        done_.wait(lock, [this] { return launch_ == nullptr; });
    }

    [[noreturn]] void abortBlock(Fiber* f, const std::string& what)
    {
        launch_->setError(what + " in block " + describe(f->ctx.block_idx) + ", thread " + describe(f->ctx.thread_idx));
        f->state = State::Done;
        vwlmm_emu_switch(&f->sp, schedulerSp_);
        __builtin_unreachable();
    }

    int syncthreads(Fiber* f, int predicate, int mode)
    {
        if (predicate) barrierCount_++;
        barrierAnd_ = barrierAnd_ && predicate;
        barrierOr_ = barrierOr_ || predicate;
        barrierArrived_++;
        if (!releaseBarrierIfComplete())
        {
            f->state = State::AtBarrier;
            f->waitGeneration = barrierGeneration_;
            yield(f);
        }
        switch (mode)
        {
            case 1: return resultCount_;
            case 2: return resultAnd_;
            case 3: return resultOr_;
            default: return 0;
        }
    }

    uint64_t warpExchange(Fiber* f, WarpOp op, unsigned mask, uint64_t value, int src)
    {
        unsigned lane = f->linear & 31u, warp = f->linear >> 5;
        if (!(mask >> lane & 1u)) abortBlock(f, "warp operation with a mask that excludes the calling lane");
        Rendezvous* r = nullptr;
        Rendezvous* pending = &rendezvous_[warp * kPendingPerWarp];
        for (int i = 0; i < kPendingPerWarp && !r; i++)
            if (pending[i].active && !pending[i].complete && pending[i].mask == mask && !(pending[i].arrived >> lane & 1u)) r = &pending[i];
        for (int i = 0; i < kPendingPerWarp && !r; i++)
            if (!pending[i].active)
            {
                r = &pending[i];
                r->active = true;
                r->complete = false;
                r->mask = mask;
                r->arrived = r->consumed = 0;
                r->op = op;
            }
        if (!r) abortBlock(f, "too many pending warp rendezvous (divergent lanes with different masks)");
        if (r->op != op) abortBlock(f, "lanes of one warp mask reached different warp operations");
        r->values[lane] = value;
        r->arrived |= 1u << lane;
        if (!completeIfAllLiveArrived(*r, liveLanes_[warp]))
        {
            f->state = State::InWarp;
            f->waitRendezvous = r;
            yield(f);
        }
        uint64_t result;
        if (op == WarpOp::Ballot)
        {
            result = 0;
            for (unsigned l = 0; l < 32; l++)
                if (r->arrived >> l & 1u && r->values[l]) result |= 1ull << l;
        }
        else
            result = src >= 0 && src < 32 && (r->arrived >> src & 1u) ? r->values[src] : kPoison;
        r->consumed |= 1u << lane;
        if (r->consumed == r->arrived) r->active = false;
        return result;
    }

    void* dynamicShared() { return shared_.data(); }

  private:
    // Called on the fiber's own stack: back to the scheduler, which resumes the fiber once its wait is over.
    void yield(Fiber* f) { vwlmm_emu_switch(&f->sp, schedulerSp_); }

    std::mutex mutex_;
    std::condition_variable wake_, done_;
    Launch* launch_ = nullptr;
    bool stop_ = false;

    void* schedulerSp_ = nullptr;
    char* stacks_ = nullptr;
    std::vector<Fiber> fibers_ = std::vector<Fiber>(kMaxThreads);
    std::vector<Rendezvous> rendezvous_ = std::vector<Rendezvous>(32 * kPendingPerWarp);
    std::vector<unsigned char> shared_ = std::vector<unsigned char>(kMaxSharedBytes);

    unsigned liveLanes_[32] = {};  // per warp: lanes that exist and have not exited
    unsigned threadCount_ = 0, exited_ = 0, barrierArrived_ = 0;
    uint64_t barrierGeneration_ = 0;
    int barrierCount_ = 0, resultCount_ = 0;
    bool barrierAnd_ = true, barrierOr_ = false, resultAnd_ = true, resultOr_ = false;

    std::thread thread_;

    static size_t pageBytes() { return (size_t)sysconf(_SC_PAGESIZE); }
    static size_t stackRegionBytes() { return kMaxThreads * (kStackBytes + pageBytes()); }

    void mapStacks()
    {
        size_t slot = kStackBytes + pageBytes();
        void* p = mmap(nullptr, stackRegionBytes(), PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) throw std::runtime_error("emulator: cannot map fiber stacks");
        stacks_ = static_cast<char*>(p);
        // The lowest page of each slot stays PROT_NONE: a stack overflow faults instead of corrupting a neighbour.
        for (unsigned i = 0; i < kMaxThreads; i++)
            if (mprotect(stacks_ + i * slot + pageBytes(), kStackBytes, PROT_READ | PROT_WRITE) != 0)
                throw std::runtime_error("emulator: cannot protect fiber stacks");
    }

    static void fiberMain(Fiber* f);

    void loop()
    {
        self = this;
        for (;;)
        {
            Launch* launch;
            {
                std::unique_lock<std::mutex> lock(mutex_);
                wake_.wait(lock, [this] { return stop_ || launch_ != nullptr; });
                if (stop_) return;
                launch = launch_;
            }
            for (uint64_t b; !launch->failed.load(std::memory_order_relaxed) && (b = launch->nextBlock.fetch_add(1)) < launch->blockCount;)
                runBlock(*launch, b);
            {
                std::lock_guard<std::mutex> lock(mutex_);
                launch_ = nullptr;
            }
            done_.notify_one();
        }
    }

    // As on the GPU, lanes of the mask that exited or do not exist (a partial last warp) are not waited for; reading
    // their value gives poison.
    static bool completeIfAllLiveArrived(Rendezvous& r, unsigned live)
    {
        if (r.mask & live & ~r.arrived) return false;
        r.complete = true;
        return true;
    }

    bool releaseBarrierIfComplete()
    {
        if (barrierArrived_ == 0 || barrierArrived_ + exited_ < threadCount_) return false;
        resultCount_ = barrierCount_;
        resultAnd_ = barrierAnd_;
        resultOr_ = barrierOr_;
        barrierCount_ = 0;
        barrierAnd_ = true;
        barrierOr_ = false;
        barrierArrived_ = 0;
        barrierGeneration_++;
        return true;
    }

    void runBlock(Launch& launch, uint64_t b)
    {
        const dim3 g = launch.grid, bd = launch.block;
        uint3 blockIdx_{(unsigned)(b % g.x), (unsigned)(b / g.x % g.y), (unsigned)(b / g.x / g.y)};
        threadCount_ = bd.x * bd.y * bd.z;
        exited_ = barrierArrived_ = 0;
        barrierCount_ = 0;
        barrierAnd_ = true;
        barrierOr_ = false;
        for (auto& r : rendezvous_) r.active = false;
        for (unsigned w = 0; w < 32; w++)
        {
            unsigned lanes = w * 32 >= threadCount_ ? 0 : std::min(32u, threadCount_ - w * 32);
            liveLanes_[w] = lanes == 32 ? ~0u : (1u << lanes) - 1u;
        }
        if (launch.sharedBytes) memset(shared_.data(), 0xFF, launch.sharedBytes);

        size_t slot = kStackBytes + pageBytes();
        for (unsigned t = 0; t < threadCount_; t++)
        {
            Fiber& f = fibers_[t];
            f.ctx = {{t % bd.x, t / bd.x % bd.y, t / bd.x / bd.y}, blockIdx_, bd, g};
            f.linear = t;
            f.state = State::Ready;
            // Initial frame popped by vwlmm_emu_switch: r15 r14 r13 r12 rbx rbp, then the return address. Two spare
            // words keep the trampoline's call 16-byte aligned, as the ABI requires.
            void** top = reinterpret_cast<void**>(stacks_ + (t + 1) * slot);
            void** sp = top - 9;
            sp[0] = sp[1] = nullptr;
            sp[2] = reinterpret_cast<void*>(&Worker::fiberMain);
            sp[3] = &f;
            sp[4] = sp[5] = nullptr;
            sp[6] = reinterpret_cast<void*>(&vwlmm_emu_trampoline);
            sp[7] = sp[8] = nullptr;
            f.sp = sp;
        }
        for (unsigned live = threadCount_; live > 0 && !launch.failed.load(std::memory_order_relaxed);)
        {
            bool progress = false;
            for (unsigned t = 0; t < threadCount_; t++)
            {
                Fiber& f = fibers_[t];
                bool runnable = f.state == State::Ready
                    || (f.state == State::AtBarrier && f.waitGeneration != barrierGeneration_)
                    || (f.state == State::InWarp && f.waitRendezvous->complete);
                if (!runnable) continue;
                progress = true;
                f.state = State::Ready;
                current = &f.ctx;
                vwlmm_emu_switch(&schedulerSp_, f.sp);
                current = nullptr;
                if (f.state == State::Done) live--;
                if (launch.failed.load(std::memory_order_relaxed)) return;
            }
            if (!progress) reportDeadlock(launch);
        }
    }

    void reportDeadlock(Launch& launch)
    {
        for (unsigned t = 0; t < threadCount_; t++)
        {
            const Fiber& f = fibers_[t];
            if (f.state == State::Done) continue;
            char where[128];
            if (f.state == State::AtBarrier)
                snprintf(where, sizeof where, "__syncthreads (%u of %u live threads arrived)", barrierArrived_, threadCount_ - exited_);
            else
                snprintf(where, sizeof where, "a warp operation on mask 0x%08x (lanes 0x%08x arrived)", f.waitRendezvous->mask, f.waitRendezvous->arrived);
            launch.setError("deadlock: every live thread waits; block " + describe(f.ctx.block_idx) + ", thread " +
                            describe(f.ctx.thread_idx) + " waits at " + std::string(where));
            return;
        }
    }

    void onExit(Fiber* f)
    {
        f->state = State::Done;
        exited_++;
        releaseBarrierIfComplete();
        unsigned warp = f->linear >> 5;
        liveLanes_[warp] &= ~(1u << (f->linear & 31u));
        Rendezvous* pending = &rendezvous_[warp * kPendingPerWarp];
        for (int i = 0; i < kPendingPerWarp; i++)
            if (pending[i].active && !pending[i].complete && pending[i].arrived) completeIfAllLiveArrived(pending[i], liveLanes_[warp]);
    }
};

thread_local Worker* Worker::self;

void Worker::fiberMain(Fiber* f)
{
    Worker* w = self;
    w->launch_->kernel->invoke(w->launch_->params);
    w->onExit(f);
    vwlmm_emu_switch(&f->sp, w->schedulerSp_);
    __builtin_unreachable();
}

Fiber* currentFiber() { return reinterpret_cast<Fiber*>(current); }

// Launches are serialised (one stream); workers are replaced only between launches.
std::mutex launchMutex;
std::vector<std::unique_ptr<Worker>> workers;
int workerCount = 2;

void ensureWorkers()
{
    while ((int)workers.size() > workerCount) workers.pop_back();
    while ((int)workers.size() < workerCount) workers.push_back(std::make_unique<Worker>());
}
}  // namespace

Registration::Registration(const char* name, Invoke invoke, int parameterCount, const char* signature)
{
    registry()[name] = Kernel{name, invoke, parameterCount, signature};
}

int syncthreads(int predicate, int mode) { return Worker::self->syncthreads(currentFiber(), predicate, mode); }

uint64_t warp_exchange(WarpOp op, unsigned mask, uint64_t value, int src)
{
    return Worker::self->warpExchange(currentFiber(), op, mask, value, src);
}

void* dynamic_shared() { return Worker::self->dynamicShared(); }

void trap(const char* what) { Worker::self->abortBlock(currentFiber(), what); }
}  // namespace emu

using namespace emu;

EMU_API int emuModuleGetFunction(void** f, const char* name)
{
    if (!f || !name) return fail(kInvalidValue, "emuModuleGetFunction: null argument");
    auto it = registry().find(name);
    if (it == registry().end()) return fail(kNotFound, std::string("kernel '") + name + "' is not in the emulator library");
    *f = const_cast<Kernel*>(&it->second);
    lastError.clear();
    return kSuccess;
}

EMU_API int emuLaunchKernel(void* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                            unsigned shmem, void* stream, void** params, void** extra)
{
    (void)stream;  // launches are synchronous, so every stream is the null stream
    if (!f) return fail(kInvalidHandle, "emuLaunchKernel: null function");
    const Kernel& k = *static_cast<const Kernel*>(f);
    auto bad = [&](const std::string& why) { return fail(kInvalidValue, "invalid launch configuration: " + why); };
    if (extra) return bad("the extra argument form is not supported, pass kernelParams");
    if (!params && k.parameterCount > 0) return bad("kernelParams is null");
    if (gx == 0 || gy == 0 || gz == 0 || bx == 0 || by == 0 || bz == 0) return bad("a grid or block dimension is 0");
    if (gx > 0x7fffffffu || gy > 65535 || gz > 65535) return bad("grid dimensions exceed (2^31-1, 65535, 65535)");
    if (bx > 1024 || by > 1024 || bz > 64) return bad("block dimensions exceed (1024, 1024, 64)");
    if ((uint64_t)bx * by * bz > kMaxThreads)
        return bad(std::to_string((uint64_t)bx * by * bz) + " threads per block (at most 1024)");
    if (shmem > kMaxSharedBytes) return bad(std::to_string(shmem) + " bytes of dynamic shared memory (at most 232448)");

    std::lock_guard<std::mutex> lock(launchMutex);
    Launch launch;
    launch.kernel = &k;
    launch.grid = dim3(gx, gy, gz);
    launch.block = dim3(bx, by, bz);
    launch.sharedBytes = shmem;
    launch.params = params;
    launch.blockCount = (uint64_t)gx * gy * gz;
    try
    {
        ensureWorkers();
    }
    catch (const std::exception& e)
    {
        return fail(kLaunchFailed, e.what());
    }
    for (auto& w : workers) w->start(&launch);
    for (auto& w : workers) w->wait();
    if (launch.failed) return fail(kLaunchFailed, launch.error);
    lastError.clear();
    return kSuccess;
}

// The kernel's parameter types, one letter each (emu::param_kind); null for a null function.
EMU_API const char* emuKernelSignature(void* f) { return f ? static_cast<const Kernel*>(f)->signature : nullptr; }

EMU_API const char* emuGetLastError() { return lastError.c_str(); }

EMU_API void emuSetWorkers(int n)
{
    std::lock_guard<std::mutex> lock(launchMutex);
    workerCount = n > 0 ? n : 2;
}

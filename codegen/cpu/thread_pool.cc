// The CPU kernels' thread pool (ParallelFor in kernel_util.h).
//
// Why not OpenMP parallel regions: libgomp's idle threads spin (OMP_WAIT_POLICY, GOMP_SPINCOUNT,
// fixed at process start) and on a machine with more runnable threads than cores (shared build
// machines; a server running several models) the spinning workers take the cores the threads
// with work need: the GPT bench ran 2-4x slower with spinning than with OMP_WAIT_POLICY=passive
// (bench/README.md). These workers spin only briefly (~50 us, enough to catch the next kernel
// of a forward pass) and then sleep on a condition variable, whatever the environment says.
// The thread count is OpenMP's (OMP_NUM_THREADS, omp_get_max_threads()) read at first use.
#include <immintrin.h>
#include <omp.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "codegen/cpu/kernel_util.h"

namespace ptc::cpu::internal {
namespace {

thread_local bool in_pool_task = false;

class ThreadPool {
 public:
  explicit ThreadPool(int threads) {
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { WorkerLoop(); });
  }
  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      generation_.fetch_add(1);
    }
    cv_.notify_all();
    for (std::thread& t : workers_) t.join();
  }
  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Runs fn(c) for every c in [0, chunks) on the workers and the calling thread.
  void Run(int64_t chunks, const std::function<void(int64_t)>& fn) {
    std::lock_guard<std::mutex> run_lock(run_mu_);  // one job at a time
    {
      std::lock_guard<std::mutex> lock(mu_);
      fn_ = &fn;
      chunks_ = chunks;
      next_.store(0);
      done_.store(0);
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    Work();
    // Wait for the chunks other threads took: spin briefly, then sleep until the last one ends
    // (a yielding loop would keep competing for the core a descheduled worker needs).
    for (int spin = 0; spin < 2000; ++spin) {
      if (done_.load(std::memory_order_acquire) >= chunks_) return;
      _mm_pause();
    }
    std::unique_lock<std::mutex> lock(mu_);
    done_cv_.wait(lock, [&] { return done_.load() >= chunks_; });
  }

 private:
  void Work() {
    in_pool_task = true;
    for (;;) {
      const int64_t c = next_.fetch_add(1);
      if (c >= chunks_) break;
      (*fn_)(c);
      if (done_.fetch_add(1, std::memory_order_acq_rel) + 1 == chunks_) {
        std::lock_guard<std::mutex> lock(mu_);  // the caller may be about to wait
        done_cv_.notify_all();
      }
    }
    in_pool_task = false;
  }

  void WorkerLoop() {
    uint64_t seen = generation_.load();
    for (;;) {
      // Spin ~50 us for the next job (the next kernel usually follows at once), then sleep.
      bool got = false;
      for (int spin = 0; spin < 2000; ++spin) {
        if (generation_.load(std::memory_order_acquire) != seen) {
          got = true;
          break;
        }
        _mm_pause();
      }
      if (!got) {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return generation_.load() != seen; });
      }
      std::unique_lock<std::mutex> lock(mu_);
      seen = generation_.load();
      if (stop_) return;
      lock.unlock();
      Work();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex run_mu_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable done_cv_;
  std::atomic<uint64_t> generation_{0};
  bool stop_ = false;
  const std::function<void(int64_t)>* fn_ = nullptr;
  int64_t chunks_ = 0;
  std::atomic<int64_t> next_{0};
  std::atomic<int64_t> done_{0};
};

ThreadPool& Pool() {
  static ThreadPool* pool = new ThreadPool(std::max(1, omp_get_max_threads()));
  return *pool;
}

}  // namespace

int MaxThreads() {
  static const int n = Pool().size();
  return n;
}

bool InParallelTask() { return in_pool_task; }

void RunChunks(int64_t chunks, const std::function<void(int64_t)>& fn) {
  Pool().Run(chunks, fn);
}

}  // namespace ptc::cpu::internal

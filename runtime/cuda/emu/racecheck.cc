// The CUDA CPU emulation's shared-memory race checker (emu.h, namespace race): the racecheck
// variant of the emulated backend compiles the kernels (codegen/cuda/*.cu) with GCC's
// -fsanitize=thread instrumentation, which calls __tsan_read4(p), __tsan_write16(p), ... before
// every load and store. This file defines those calls (the TSan runtime is not linked) and
// keeps, for every byte of the running block's shared memory, the last write and the reads
// since it: which thread, at which of the block's barrier counts, and the source address.
//
// Fibers switch only at barriers, so the emulation runs a block's threads one after another;
// the shadow makes the order irrelevant. Two accesses to one byte by different threads, at
// least one a write, race unless
// - a __syncthreads opened between them (the access's barrier count is below the current), or
// - they are lanes of one warp and a collective of the whole warp (shuffle, ballot, mma,
//   ldmatrix, __syncwarp) completed between them.
// A cp.async's write spans its issue to its wait (any barrier count in between). A read of a
// shared byte that no thread of the block has written yet is an error too (uninitialized).
//
// Global memory (cudaMalloc's), between the blocks of a launch: blocks may run in any order
// and no kernel of ptc orders them (no fences, no flags), so a byte that one block writes and
// another block reads or writes in the same launch is a race. Kept per launch, per byte: the
// writing block and the reading block(s). Threads of one block on global memory are not
// checked. PTC_CUDA_EMU_RACECHECK_GLOBAL=0 turns the global part off (it costs 6 bytes of
// shadow per byte a launch touches).
//
// Atomics (device_shim.h) are not instrumented: atomic against atomic is no race, and atomic
// against a plain access is not checked.
#include <dlfcn.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/cuda/emu/emu.h"

namespace ptc::emu::race {
namespace {

struct Acc {
  int32_t tid = -1;       // -1: none
  uint32_t lo = 0, hi = 0;  // barrier counts the access spans (lo == hi but for cp.async)
  uint32_t wsync = 0;     // the warp's collective count at the access (UINT32_MAX: cp.async)
  const void* pc = nullptr;
};

struct Cell {
  uint64_t block = 0;  // the block serial the cell's accesses belong to (older ones are void)
  Acc w;
  Acc r[2];  // reads since the write by up to two distinct threads
};

struct Region {
  const unsigned char* base = nullptr;
  size_t bytes = 0;
  const char* name = nullptr;
  std::vector<Cell> cells;
};

// Global memory: per byte, the launch's writing block and up to two reading blocks as (linear
// block index mod 65535) + 1; 0 none, r[1] == kSeveral: more than two blocks read it. Two
// blocks whose indexes agree mod 65535 count as one (a race between them can be missed, none
// invented).
constexpr uint16_t kSeveral = 0xffff;
struct GlobalCell {
  uint16_t w, r[2];
};
constexpr size_t kPageBytes = 4096;
struct GlobalPage {
  GlobalCell cells[kPageBytes];
};

struct FreshRead {  // a read of a shared byte no thread of the block had written
  const Region* region;
  size_t offset;
  Acc acc;
};

// Bank conflicts (PTC_CUDA_EMU_BANKS=1): a warp's request is the k-th execution of one
// instruction (pc) by its lanes; its lanes' shared-memory offsets give the wavefronts.
struct LaneAccess {
  uint32_t offset;  // in the region (regions are taken as 128-byte aligned, as on a GPU)
  uint8_t lane, bytes;
};
struct RequestKey {
  const void* pc;
  const Region* region;
  uint32_t warp, k;
  bool operator==(const RequestKey& o) const {
    return pc == o.pc && region == o.region && warp == o.warp && k == o.k;
  }
};
struct RequestKeyHash {
  size_t operator()(const RequestKey& k) const {
    return std::hash<const void*>()(k.pc) ^ (size_t{k.warp} << 40) ^
           (size_t{k.k} * 0x9e3779b97f4a7c15ull) ^ std::hash<const void*>()(k.region);
  }
};

struct State {
  uint64_t block = 0;
  std::vector<FreshRead> fresh_reads;
  bool banks = false;  // PTC_CUDA_EMU_BANKS
  std::unordered_map<uint64_t, uint32_t> executions;  // (pc, thread) -> times so far (block)
  std::unordered_map<RequestKey, std::vector<LaneAccess>, RequestKeyHash> requests;  // block
  std::map<const void*, BankStat> bank_stats;  // by pc, over the process
  uint16_t block_tag = 1;  // this block's tag in GlobalCell
  bool global = true;      // PTC_CUDA_EMU_RACECHECK_GLOBAL
  std::map<uintptr_t, size_t> allocations;  // base -> bytes (cudaMalloc)
  uintptr_t last_base = 0, last_end = 0;     // the allocation found last
  std::unordered_map<uintptr_t, std::unique_ptr<GlobalPage>> pages;  // this launch's shadow
  std::vector<std::unique_ptr<GlobalPage>> free_pages;
  uintptr_t page_key = 0;     // the shadow page used last
  GlobalPage* page = nullptr;
  uint32_t barriers = 0;
  std::vector<uint32_t> wsync;  // per warp
  Region dynamic;
  std::vector<Region> statics;
  uintptr_t static_lo = UINTPTR_MAX, static_hi = 0;
  uint64_t checked = 0;  // shared-memory bytes checked (tests read it)
};

std::string Symbolize(const void* pc);

// One for the process: the emulation runs one launch at a time (emu.cc's launch lock), and
// allocations may come from any thread (under allocations_mu).
State& St() {
  static State* s = [] {
    auto* st = new State;
    const char* e = std::getenv("PTC_CUDA_EMU_RACECHECK_GLOBAL");
    st->global = e == nullptr || std::string(e) != "0";
    // PTC_CUDA_EMU_BANKS=1: the 20 instructions with the most excess wavefronts; =N: N of them.
    const char* b = std::getenv("PTC_CUDA_EMU_BANKS");
    static int lines = b != nullptr ? std::atoi(b) : 0;
    lines = lines == 1 ? 20 : lines;
    st->banks = lines > 0;
    if (st->banks) {
      std::atexit([] {
        std::fputs(BankTable(lines).c_str(), stderr);
        // PTC_CUDA_EMU_BANKS_FAIL=1: exit 1 if an instruction takes more wavefronts than its
        // ideal, unless its kernel name or its "file.cu:line" starts with an entry of
        // PTC_CUDA_EMU_BANKS_ALLOW (comma-separated): a guard for the kernels known to be
        // conflict-free.
        const char* fail = std::getenv("PTC_CUDA_EMU_BANKS_FAIL");
        if (fail == nullptr || std::string(fail) != "1") return;
        const char* allow_env = std::getenv("PTC_CUDA_EMU_BANKS_ALLOW");
        std::vector<std::string> allow;
        for (std::string rest = allow_env != nullptr ? allow_env : ""; !rest.empty();) {
          const size_t comma = rest.find(',');
          allow.push_back(rest.substr(0, comma));
          rest = comma == std::string::npos ? "" : rest.substr(comma + 1);
        }
        for (const BankStat& b : BankStats()) {
          if (b.wavefronts <= b.ideal) continue;
          const std::string where = Symbolize(b.pc);
          bool allowed = false;
          for (const std::string& a : allow) {
            allowed |= !a.empty() && (b.kernel.rfind(a, 0) == 0 || where.rfind(a, 0) == 0);
          }
          if (!allowed) {
            std::fprintf(stderr, "PTC_CUDA_EMU_BANKS_FAIL: %s (%s) takes %.2f wavefronts per "
                                 "request for an ideal %.2f\n", where.c_str(), b.kernel.c_str(),
                         static_cast<double>(b.wavefronts) / static_cast<double>(b.requests),
                         static_cast<double>(b.ideal) / static_cast<double>(b.requests));
            std::fflush(stderr);
            std::_Exit(1);
          }
        }
      });
    }
    return st;
  }();
  return *s;
}
std::mutex allocations_mu;

std::string Symbolize(const void* pc) {
  if (pc == nullptr) return "?";
  Dl_info info{};
  if (dladdr(pc, &info) == 0 || info.dli_fname == nullptr) return "?";
  const uintptr_t at = reinterpret_cast<uintptr_t>(pc) - 1;  // the call, not its return
  const uintptr_t base = reinterpret_cast<uintptr_t>(info.dli_fbase);
  char cmd[1024];
  std::snprintf(cmd, sizeof cmd, "addr2line -C -f -e '%s' 0x%lx 2>/dev/null", info.dli_fname,
                static_cast<unsigned long>(at - base));
  std::string fn, line;
  if (FILE* p = popen(cmd, "r")) {
    char buf[2048];
    if (std::fgets(buf, sizeof buf, p)) fn = buf;
    if (std::fgets(buf, sizeof buf, p)) line = buf;
    pclose(p);
  }
  auto strip = [](std::string& x) {
    while (!x.empty() && (x.back() == '\n' || x.back() == '\r')) x.pop_back();
  };
  strip(fn);
  strip(line);
  if (line.empty() || line.rfind("??", 0) == 0) {
    if (info.dli_sname != nullptr) return info.dli_sname;
    char b[64];
    std::snprintf(b, sizeof b, "%s+0x%lx", info.dli_fname, static_cast<unsigned long>(at - base));
    return b;
  }
  const size_t disc = line.find(" (discriminator");
  if (disc != std::string::npos) line.resize(disc);
  const size_t slash = line.rfind('/');
  if (slash != std::string::npos) line = line.substr(slash + 1);
  // "void (anonymous namespace)::ns::Kernel<T, 4>(float*)::{lambda(int)#1}::operator()(int)
  // const" -> "ns::Kernel::{lambda#1}::operator const": no return type, template arguments or
  // parameter lists.
  for (const std::string anon = "(anonymous namespace)::";;) {
    const size_t a = fn.find(anon);
    if (a == std::string::npos) break;
    fn.erase(a, anon.size());
  }
  std::string shortened;
  int parens = 0, angles = 0;
  for (const char ch : fn) {
    if (ch == '(') {
      ++parens;
    } else if (ch == ')') {
      parens -= parens > 0;
    } else if (ch == '<' && parens == 0) {
      ++angles;
    } else if (ch == '>' && parens == 0) {
      angles -= angles > 0;
    } else if (parens == 0 && angles == 0) {
      shortened += ch;
    }
  }
  const size_t space = shortened.find(' ');
  if (space != std::string::npos && shortened.find("::") > space) shortened.erase(0, space + 1);
  fn = shortened;
  return fn.empty() ? line : line + " (" + fn + ")";
}

std::string RegionName(const Region& r) {
  return r.name != nullptr ? r.name : (&r == &St().dynamic ? "dynamic" : "static");
}

std::string Thread(int tid) {
  const uint3 t = ThreadIndex(tid);
  return "thread (" + std::to_string(t.x) + "," + std::to_string(t.y) + "," +
         std::to_string(t.z) + ")";
}

// A conflict's name, in the emulation's order of the two accesses.
const char* Kind(bool first_write, bool second_write) {
  return first_write && second_write ? "write-after-write"
         : first_write               ? "read-after-write"
                                     : "write-after-read";
}

[[noreturn]] void Report(const Region& r, size_t offset, const Acc& prev, bool prev_write,
                         const Acc& now, bool now_write) {
  const char* kind = Kind(prev_write, now_write);
  std::string what = std::string("race on shared memory (") + kind + ") at " + RegionName(r) +
                     " + " +
                     std::to_string(offset) + " bytes: " + (prev_write ? "write" : "read") +
                     " by " + Thread(prev.tid) + " at " + Symbolize(prev.pc) + ", then " +
                     (now_write ? "write" : "read") + " by " + Thread(now.tid) + " at " +
                     Symbolize(now.pc) +
                     ", with no __syncthreads between them (barrier " + std::to_string(now.hi) +
                     " of the block)";
  Fatal(what);
}

// Whether the earlier access p and the access n (different threads) may run concurrently.
bool Concurrent(const Acc& p, const Acc& n) {
  if (p.tid < 0 || p.tid == n.tid) return false;
  if (p.hi < n.lo || n.hi < p.lo) return false;  // a barrier opened between them
  if (p.tid / 32 == n.tid / 32 && p.wsync != UINT32_MAX && n.wsync != UINT32_MAX &&
      p.wsync != n.wsync) {
    return false;  // a collective of their whole warp completed between them
  }
  return true;
}

void Check(Region& r, size_t offset, size_t bytes, bool write, const Acc& a) {
  State& s = St();
  if (r.cells.size() < r.bytes) r.cells.resize(r.bytes);
  if (offset + bytes > r.bytes) bytes = r.bytes - offset;
  s.checked += bytes;
  for (size_t i = offset; i < offset + bytes; ++i) {
    Cell& c = r.cells[i];
    if (c.block != s.block) {
      // Reported at the block's end unless a race with a concurrent write is reported first.
      if (!write && s.fresh_reads.size() < 4) s.fresh_reads.push_back({&r, i, a});
      c = Cell{s.block, {}, {}};
    }
    if (Concurrent(c.w, a)) Report(r, i, c.w, true, a, write);
    if (write) {
      for (const Acc& rd : c.r) {
        if (Concurrent(rd, a)) Report(r, i, rd, false, a, true);
      }
      c.w = a;
      c.r[0] = c.r[1] = Acc{};
    } else {
      // Reads before the last barrier are ordered with whatever follows: drop them.
      for (Acc& rd : c.r) {
        if (rd.tid >= 0 && rd.hi < a.lo) rd = Acc{};
      }
      if (c.r[0].tid < 0 || c.r[0].tid == a.tid) {
        c.r[0] = a;
      } else if (c.r[1].tid < 0 || c.r[1].tid == a.tid) {
        c.r[1] = a;
      }
    }
  }
}

std::string Block(uint16_t tag) {
  // The tag is the linear index mod 65535 + 1: name it by the index when that is unambiguous.
  const dim3 g = t_grid_dim;
  const uint64_t blocks = uint64_t{g.x} * g.y * g.z;
  if (tag == kSeveral) return "other blocks";
  if (blocks > 65535) return "another block";
  const uint64_t i = tag - 1u;
  return "block (" + std::to_string(i % g.x) + "," + std::to_string(i / g.x % g.y) + "," +
         std::to_string(i / (uint64_t{g.x} * g.y)) + ")";
}

[[noreturn]] void ReportGlobal(uintptr_t base, size_t size, uintptr_t at, uint16_t other,
                               bool other_write, bool now_write, const void* pc) {
  const char* kind = Kind(other_write, now_write);
  char where[96];
  std::snprintf(where, sizeof where, "0x%lx + %lu of %lu bytes", static_cast<unsigned long>(base),
                static_cast<unsigned long>(at - base), static_cast<unsigned long>(size));
  Fatal(std::string("race on global memory between blocks (") + kind + ") at allocation " +
        where + ": " + (other_write ? "written" : "read") + " by " + Block(other) +
        " of this launch, " + (now_write ? "written" : "read") + " here at " + Symbolize(pc) +
        "; the blocks of a launch may run in any order");
}

void CheckGlobal(uintptr_t a, size_t bytes, bool write, const void* pc) {
  State& s = St();
  if (a < s.last_base || a >= s.last_end) {
    std::lock_guard<std::mutex> lock(allocations_mu);
    auto it = s.allocations.upper_bound(a);
    if (it == s.allocations.begin()) return;
    --it;
    if (a - it->first >= it->second) return;
    s.last_base = it->first;
    s.last_end = it->first + it->second;
  }
  if (a + bytes > s.last_end) bytes = s.last_end - a;
  const uint16_t me = s.block_tag;
  const size_t size = s.last_end - s.last_base;
  for (size_t i = 0; i < bytes; ++i) {
    const uintptr_t b = a + i;
    if (b / kPageBytes != s.page_key || s.page == nullptr) {
      std::unique_ptr<GlobalPage>& page = s.pages[b / kPageBytes];
      if (page == nullptr) {
        if (!s.free_pages.empty()) {
          page = std::move(s.free_pages.back());
          s.free_pages.pop_back();
        } else {
          page = std::make_unique<GlobalPage>();
        }
        std::memset(page->cells, 0, sizeof page->cells);
      }
      s.page_key = b / kPageBytes;
      s.page = page.get();
    }
    GlobalCell& c = s.page->cells[b % kPageBytes];
    if (c.w != 0 && c.w != me) ReportGlobal(s.last_base, size, b, c.w, true, write, pc);
    if (write) {
      for (const uint16_t r : c.r) {
        if (r != 0 && r != me) ReportGlobal(s.last_base, size, b, r, false, true, pc);
      }
      c.w = me;
    } else if (c.r[0] == 0 || c.r[0] == me) {
      c.r[0] = me;
    } else if (c.r[1] == 0 || c.r[1] == me) {
      c.r[1] = me;
    } else {
      c.r[1] = kSeveral;
    }
  }
}

// The region that holds p, or null.
Region* Find(const void* p, size_t* offset) {
  State& s = St();
  const auto a = reinterpret_cast<uintptr_t>(p);
  const auto d = reinterpret_cast<uintptr_t>(s.dynamic.base);
  if (a - d < s.dynamic.bytes) {
    *offset = a - d;
    return &s.dynamic;
  }
  if (a < s.static_lo || a >= s.static_hi) return nullptr;
  for (Region& r : s.statics) {
    const auto b = reinterpret_cast<uintptr_t>(r.base);
    if (a - b < r.bytes) {
      *offset = a - b;
      return &r;
    }
  }
  return nullptr;
}

// One lane's part of a warp's shared-memory request (the k-th execution of pc by the lane).
void BankRecord(const Region& r, size_t offset, size_t bytes, int tid, const void* pc) {
  State& s = St();
  const uint32_t k = s.executions[reinterpret_cast<uint64_t>(pc) * 1024 + tid]++;
  auto& lanes = s.requests[RequestKey{pc, &r, static_cast<uint32_t>(tid / 32), k}];
  lanes.push_back(LaneAccess{static_cast<uint32_t>(offset), static_cast<uint8_t>(tid % 32),
                             static_cast<uint8_t>(bytes)});
}

// The block's requests into wavefronts: 4-byte (or narrower) accesses are served a warp at a
// time, 8-byte ones a half warp, 16-byte ones a quarter warp; in each such phase a bank
// (4-byte word index mod 32) serves one distinct word per wavefront (lanes reading one word
// share it). The ideal is the phase's distinct words over 32.
void FlushBanks() {
  State& s = St();
  for (const auto& [key, lanes] : s.requests) {
    int width = 1;
    for (const LaneAccess& l : lanes) width = std::max<int>(width, l.bytes);
    const int per_phase = width <= 4 ? 32 : width <= 8 ? 16 : 8;
    uint64_t waves = 0, ideal = 0;
    for (int phase = 0; phase < 32 / per_phase; ++phase) {
      std::vector<uint32_t> words;
      for (const LaneAccess& l : lanes) {
        if (l.lane / per_phase != phase) continue;
        for (uint32_t w = l.offset / 4; w <= (l.offset + l.bytes - 1) / 4; ++w) words.push_back(w);
      }
      if (words.empty()) continue;
      std::sort(words.begin(), words.end());
      words.erase(std::unique(words.begin(), words.end()), words.end());
      int per_bank[32] = {};
      int most = 0;
      for (const uint32_t w : words) most = std::max(most, ++per_bank[w % 32]);
      waves += static_cast<uint64_t>(most);
      ideal += (words.size() + 31) / 32;
    }
    BankStat& st = s.bank_stats[key.pc];
    if (st.kernel.empty()) st.kernel = KernelName();
    st.pc = key.pc;
    ++st.requests;
    st.wavefronts += waves;
    st.ideal += ideal;
  }
  s.requests.clear();
  s.executions.clear();
}

void Record(const void* p, size_t bytes, bool write, Acc a, bool banks = true) {
  size_t offset = 0;
  Region* r = Find(p, &offset);
  if (r != nullptr) {
    Check(*r, offset, bytes, write, a);
    if (banks && St().banks) BankRecord(*r, offset, bytes, a.tid, a.pc);
  } else if (St().global) {
    CheckGlobal(reinterpret_cast<uintptr_t>(p), bytes, write, a.pc);
  }
}

}  // namespace

void LaunchStart() {
  State& s = St();
  for (auto& [addr, page] : s.pages) s.free_pages.push_back(std::move(page));
  s.pages.clear();
  s.page = nullptr;
}

void Allocated(const void* p, size_t bytes) {
  State& s = St();
  std::lock_guard<std::mutex> lock(allocations_mu);
  s.allocations[reinterpret_cast<uintptr_t>(p)] = bytes;
}

void Freed(const void* p) {
  State& s = St();
  std::lock_guard<std::mutex> lock(allocations_mu);
  s.allocations.erase(reinterpret_cast<uintptr_t>(p));
  s.last_base = s.last_end = 0;
}

void BlockStart(uint64_t block_serial, uint64_t block_linear, int threads, const void* dynamic,
                size_t dynamic_bytes) {
  State& s = St();
  s.block = block_serial;
  s.fresh_reads.clear();
  s.block_tag = static_cast<uint16_t>(block_linear % 65535 + 1);
  s.barriers = 0;
  s.wsync.assign(static_cast<size_t>((threads + 31) / 32), 0);
  s.dynamic.base = static_cast<const unsigned char*>(dynamic);
  s.dynamic.bytes = dynamic_bytes;
  s.dynamic.name = nullptr;
}

void DynamicName(const char* name) {
  State& s = St();
  if (s.dynamic.name == nullptr) s.dynamic.name = name;
}

void SharedVariable(const void* p, size_t bytes, const char* name) {
  State& s = St();
  for (const Region& r : s.statics) {
    if (r.base == p) return;
  }
  Region r;
  r.base = static_cast<const unsigned char*>(p);
  r.bytes = bytes;
  r.name = name;
  s.statics.push_back(std::move(r));
  const auto a = reinterpret_cast<uintptr_t>(p);
  if (a < s.static_lo) s.static_lo = a;
  if (a + bytes > s.static_hi) s.static_hi = a + bytes;
}

void BlockEnd() {
  State& s = St();
  if (s.banks) FlushBanks();
  if (s.fresh_reads.empty()) return;
  const FreshRead& f = s.fresh_reads.front();
  Fatal("read of uninitialized shared memory at " + RegionName(*f.region) + " + " +
        std::to_string(f.offset) +
        " bytes by " + Thread(f.acc.tid) + " at " + Symbolize(f.acc.pc) +
        ": no thread of the block had written it (on a GPU it holds whatever an earlier block "
        "left there)");
}

void BarrierOpened() { ++St().barriers; }

void WarpSynced(int warp) {
  State& s = St();
  if (static_cast<size_t>(warp) < s.wsync.size()) ++s.wsync[static_cast<size_t>(warp)];
}

uint32_t Barriers() { return St().barriers; }

namespace {
// The running thread's plain access at pc, now.
Acc Now(int tid, const void* pc) {
  State& s = St();
  const size_t warp = static_cast<size_t>(tid / 32);
  const uint32_t ws = warp < s.wsync.size() ? s.wsync[warp] : 0;
  return Acc{tid, s.barriers, s.barriers, ws, pc};
}
}  // namespace

void Access(const void* p, size_t bytes, bool write, const void* pc) {
  const int tid = CurrentThread();
  if (tid >= 0) Record(p, bytes, write, Now(tid, pc));
}

void LdmatrixRead(const void* p, size_t bytes, const void* pc) {
  const int tid = CurrentThread();
  if (tid >= 0) Record(p, bytes, false, Now(tid, pc), /*banks=*/false);
}

void LdmatrixRows(const void* const* rows, const void* pc) {
  const int tid = CurrentThread();
  State& s = St();
  if (tid < 0 || !s.banks) return;
  // Lanes 8m..8m+7 give matrix m's 8 rows of 16 bytes: four phases of 8 rows, as 16-byte
  // accesses of a quarter warp are. Recorded once for the warp, as its lane 0.
  const int first = tid - tid % 32;
  for (int j = 0; j < 32; ++j) {
    size_t offset = 0;
    const Region* r = Find(rows[j], &offset);
    if (r != nullptr) BankRecord(*r, offset, 16, first + j, pc);
  }
}

std::vector<BankStat> BankStats() {
  std::vector<BankStat> out;
  for (const auto& [pc, st] : St().bank_stats) out.push_back(st);
  std::sort(out.begin(), out.end(), [](const BankStat& a, const BankStat& b) {
    return a.wavefronts - a.ideal > b.wavefronts - b.ideal;
  });
  return out;
}

void ResetBankStats() { St().bank_stats.clear(); }

void CountBanks(bool on) { St().banks = on; }

std::string BankTable(int most) {
  const std::vector<BankStat> stats = BankStats();
  uint64_t req = 0, waves = 0, ideal = 0;
  for (const BankStat& b : stats) {
    req += b.requests;
    waves += b.wavefronts;
    ideal += b.ideal;
  }
  std::string out = "shared-memory bank conflicts (PTC_CUDA_EMU_BANKS: 32 banks of 4 bytes; " +
                    std::to_string(stats.size()) + " instructions, " + std::to_string(req) +
                    " warp requests, " + std::to_string(waves) + " wavefronts for an ideal " +
                    std::to_string(ideal) + ")\n";
  char line[512];
  std::snprintf(line, sizeof line, "%10s %8s %8s  %-28s %s\n", "requests", "waves/r", "ideal/r",
                "kernel", "instruction");
  out += line;
  int shown = 0;
  for (const BankStat& b : stats) {
    if (shown++ >= most || b.wavefronts <= b.ideal) break;
    std::snprintf(line, sizeof line, "%10llu %8.2f %8.2f  %-28s %s\n",
                  static_cast<unsigned long long>(b.requests),
                  static_cast<double>(b.wavefronts) / static_cast<double>(b.requests),
                  static_cast<double>(b.ideal) / static_cast<double>(b.requests),
                  b.kernel.c_str(), Symbolize(b.pc).c_str());
    out += line;
  }
  return out;
}

void AsyncWrite(const void* p, size_t bytes, uint32_t issued, const void* pc) {
  const int tid = CurrentThread();
  if (tid < 0) return;
  State& s = St();
  Record(p, bytes, true, Acc{tid, issued, s.barriers, UINT32_MAX, pc});
}

uint64_t CheckedBytes() { return St().checked; }

}  // namespace ptc::emu::race

// =============================================================================================
// The instrumentation's entry points (GCC -fsanitize=thread; compiled with
// --param=tsan-instrument-func-entry-exit=0). Only the kernels' files are instrumented.

namespace {
// Access ignores host code of the kernels' files (no current thread).
inline void Hook(const void* p, size_t n, bool write, const void* pc) {
  ptc::emu::race::Access(p, n, write, pc);
}
}  // namespace

extern "C" {

void __tsan_init() {}
void __tsan_func_entry(void*) {}
void __tsan_func_exit() {}
void __tsan_vptr_update(void**, void*) {}
void __tsan_vptr_read(void**) {}

#define PTC_TSAN_RW(n)                                                                           \
  void __tsan_read##n(void* p) { Hook(p, n, false, __builtin_return_address(0)); }             \
  void __tsan_write##n(void* p) { Hook(p, n, true, __builtin_return_address(0)); }             \
  void __tsan_unaligned_read##n(void* p) { Hook(p, n, false, __builtin_return_address(0)); }   \
  void __tsan_unaligned_write##n(void* p) { Hook(p, n, true, __builtin_return_address(0)); }   \
  void __tsan_volatile_read##n(void* p) { Hook(p, n, false, __builtin_return_address(0)); }    \
  void __tsan_volatile_write##n(void* p) { Hook(p, n, true, __builtin_return_address(0)); }
PTC_TSAN_RW(1)
PTC_TSAN_RW(2)
PTC_TSAN_RW(4)
PTC_TSAN_RW(8)
PTC_TSAN_RW(16)
#undef PTC_TSAN_RW

void __tsan_read_range(void* p, unsigned long n) { Hook(p, n, false, __builtin_return_address(0)); }
void __tsan_write_range(void* p, unsigned long n) { Hook(p, n, true, __builtin_return_address(0)); }

// Atomics in the instrumented files (host code: std::shared_ptr, function statics' guards, ...):
// done as the sequentially consistent builtins, the memory order arguments ignored.
#define PTC_TSAN_ATOMIC(n, T)                                                                   \
  T __tsan_atomic##n##_load(const volatile T* a, int) {                                         \
    return __atomic_load_n(a, __ATOMIC_SEQ_CST);                                                \
  }                                                                                             \
  void __tsan_atomic##n##_store(volatile T* a, T v, int) {                                      \
    __atomic_store_n(a, v, __ATOMIC_SEQ_CST);                                                   \
  }                                                                                             \
  T __tsan_atomic##n##_exchange(volatile T* a, T v, int) {                                      \
    return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST);                                         \
  }                                                                                             \
  T __tsan_atomic##n##_fetch_add(volatile T* a, T v, int) {                                     \
    return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST);                                          \
  }                                                                                             \
  T __tsan_atomic##n##_fetch_sub(volatile T* a, T v, int) {                                     \
    return __atomic_fetch_sub(a, v, __ATOMIC_SEQ_CST);                                          \
  }                                                                                             \
  T __tsan_atomic##n##_fetch_and(volatile T* a, T v, int) {                                     \
    return __atomic_fetch_and(a, v, __ATOMIC_SEQ_CST);                                          \
  }                                                                                             \
  T __tsan_atomic##n##_fetch_or(volatile T* a, T v, int) {                                      \
    return __atomic_fetch_or(a, v, __ATOMIC_SEQ_CST);                                           \
  }                                                                                             \
  T __tsan_atomic##n##_fetch_xor(volatile T* a, T v, int) {                                     \
    return __atomic_fetch_xor(a, v, __ATOMIC_SEQ_CST);                                          \
  }                                                                                             \
  T __tsan_atomic##n##_fetch_nand(volatile T* a, T v, int) {                                    \
    return __atomic_fetch_nand(a, v, __ATOMIC_SEQ_CST);                                         \
  }                                                                                             \
  int __tsan_atomic##n##_compare_exchange_strong(volatile T* a, T* c, T v, int, int) {          \
    return __atomic_compare_exchange_n(a, c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);     \
  }                                                                                             \
  int __tsan_atomic##n##_compare_exchange_weak(volatile T* a, T* c, T v, int, int) {            \
    return __atomic_compare_exchange_n(a, c, v, true, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);      \
  }                                                                                             \
  T __tsan_atomic##n##_compare_exchange_val(volatile T* a, T c, T v, int, int) {                \
    __atomic_compare_exchange_n(a, &c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);           \
    return c;                                                                                   \
  }
PTC_TSAN_ATOMIC(8, uint8_t)
PTC_TSAN_ATOMIC(16, uint16_t)
PTC_TSAN_ATOMIC(32, uint32_t)
PTC_TSAN_ATOMIC(64, uint64_t)
#undef PTC_TSAN_ATOMIC

void __tsan_atomic_thread_fence(int) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
void __tsan_atomic_signal_fence(int) { __atomic_signal_fence(__ATOMIC_SEQ_CST); }

}  // extern "C"
